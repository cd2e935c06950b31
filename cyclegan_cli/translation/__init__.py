"""``cyc run``'s work: ``translate`` (one job list through one engine), the inputs planned as jobs (``jobs``,
``segments``, ``sharding``), the engine choice and its measured figures (``engine_choice``, ``break_even``), the
pipeline of reader, engine and writer threads (``pipeline``), ``--stable`` (``temporal``, measured by ``flicker``)
and what a run says at its end (``report``).

May import ``export``, ``hub``, ``models`` and the shared modules; engines, readers and writers are reached through
the registry.
"""
