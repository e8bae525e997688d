"""The evaluation gate (pure): datasets, scorers, the paired tests and the verdict. The shell sends
the cases (`controller/evaluation.py`); nothing here does I/O."""
