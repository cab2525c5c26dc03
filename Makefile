# The two commands a newcomer needs; each sets up ./.venv first if it is missing or stale.
#   make reproduce   the main job on the shipped tiny-sd15 world
#   make test        the test suite (about 7 minutes on 2 CPU cores, once set up)
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test reproduce
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

reproduce: $(STAMP)
	$(PY) -m harness.reproduce table5
