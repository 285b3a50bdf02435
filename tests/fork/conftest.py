# The wine example and its tests are what a fork puts in place of src/example/ and
# tests/example/; they run in the fork (test_fork.py), never against this repository's example.
# The diabetes example and its tests are the regression fork's (test_regression_fork.py).
collect_ignore = ["wine_example", "wine_tests", "diabetes_example", "diabetes_tests"]
