"""The graded tests of the assignments: <name>_public.py (handed out) and <name>_hidden.py
(kept by the grader). Each test is named test_<part>__<what>."""
