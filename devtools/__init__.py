"""Tools for developing vector_pipeline that are not part of it: fakes of the services it
talks to, used by the tests and by scripts/ (never installed with the package)."""
