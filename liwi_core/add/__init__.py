"""ADD (Agent-driven Data Decomposition): layered training samples from ordinary photos.

``tools`` are small swappable functions (cut-out, background cleaning, cast shadows,
colour harmonisation, placement, prompt degradation); ``agents`` plan and curate each
sample; ``run`` drives a deterministic, resumable, shardable job.
"""
