"""rrm-server on Ray Serve (``rrm-server serve --ray``, ``serve run deploy/ray/...``).

Two deployments in one Serve application:

* ``EngineReplica`` (``engine_replica.py``): one vLLM ``AsyncLLM`` per replica, generating from token
  ids with the same ``GenerationRequest``/``Generation`` contract as the in-process engine;
* ``Gateway`` (``app.py``): the same FastAPI app as ``rrm-server serve``, as the ingress, talking to
  the engine replicas through a ``DeploymentHandle`` (``RayHandleEngine``, ``handle_engine.py``), so
  nothing above the engine interface changes;

with comparisons routed by prefix affinity (``router.py``), engine replicas autoscaled and
backpressured by Serve, and ``launch.py`` to start it all from the command line. Imported only
when Ray Serve is used: nothing else in the package imports ``ray``.
"""
