"""pytest set-up shared by the unit tests and nbval (it lives at the root so that both see it).

nbval compares each notebook cell's fresh outputs with the committed ones. stderr carries
progress bars and library warnings, which change with timing and versions and teach nothing, so
it is not compared; results a student should reproduce go to stdout or to the cell's value.
"""


def pytest_collectstart(collector):
    if collector.path is not None and collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare = (*collector.skip_compare, "stderr")
