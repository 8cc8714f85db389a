"""fastnn's asv suite (configuration: ../asv.conf.json; how to run: ../README.md).

asv imports this directory as the package ``benchmarks``, which shadows the repository's top-level
``benchmarks`` package in these processes; _common.py therefore loads ../matrix.py by its path.
"""
