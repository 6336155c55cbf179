"""Wire types: what the server, the client, ``LocalJudge`` and the evaluation runner exchange."""
