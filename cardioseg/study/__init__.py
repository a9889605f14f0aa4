"""The study (floor 6): the paper's questions as one run (``experiments/configs``, ``cardioseg study``).

``plan`` checks a study's settings and lays them out as runs, ``workflow`` runs them (chained pretrainings,
then the fine-tuning grid, packed by ``packing`` and ``worker``), ``results`` says what they found and
``report`` shows it.
"""
