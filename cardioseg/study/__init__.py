"""The study's machinery (floor 6): running grids of bundle runs; the study itself follows pretraining."""
