# The two commands a newcomer needs; each sets up ./.venv first if it is missing or stale.
#   make reproduce   the main job on the shipped tiny-sd15 world
#   make test        the test suite (621 tests; 11-20 minutes on a 2-core machine)
# and, for the metric scorers against the reference packages (a second environment, ./.venv-metrics):
#   make test-metrics
PY := .venv/bin/python
STAMP := .venv/.installed

METRICS_PY := .venv-metrics/bin/python
METRICS_STAMP := .venv-metrics/.installed

.PHONY: setup test reproduce test-metrics
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

reproduce: $(STAMP)
	$(PY) -m harness.reproduce table5

$(METRICS_STAMP): pyproject.toml scripts/setup_metrics.sh
	bash scripts/setup_metrics.sh
	touch $(METRICS_STAMP)

# TDM_REQUIRE_PARITY=1: a reference package that fails to import fails the tests instead of skipping them.
test-metrics: $(METRICS_STAMP)
	TDM_REQUIRE_PARITY=1 $(METRICS_PY) -m pytest -m parity
