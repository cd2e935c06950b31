"""The Click layer: one module per ``cyc`` subcommand (``train``, ``distill``, ``run``, ``export``, ``eval``, ``join``,
``datasets``, ``pretrained``, ``plugins``, ``doctor``), the options they share, and ``doctor_facts`` (what
``cyc doctor`` gathers). Options, help texts and the one-line errors live here; the work is done below.

May import every other subpackage; nothing imports it but ``cyclegan_cli.cli``.
"""
