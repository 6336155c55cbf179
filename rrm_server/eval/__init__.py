"""``rrm-server eval``: a judge's accuracy on real pairwise-preference and best-of-N data.

    data.py     readers (PandaLM, LLMBar, generic JSONL, GSM8K best-of-N) -> items
    records.py  one finished item as stored in results.jsonl (built from API results; pure)
    metrics.py  accuracy, confidence intervals, consistency, invalid rates (pure)
    runner.py   judging through LocalJudge or the HTTP client, resumable, with a progress bar
    report.py   summary.json, summary.md and a plot
    cli.py      ``main(argv)``
"""
