# Benchmarks (bench/, docs/benchmarks.md). Not part of `make test`: figures
# need a quiet machine and minutes, not a CI gate.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(PY) -m pip install -q -r bench/requirements.txt
	touch $@

## make bench: the whole suite; writes bench/results/ (JSON, report.md, PNG charts)
bench: $(BENCH_STAMP)
	$(PY) -m bench.run full

## make bench-quick: a short version (< 2 min) into bench/.work/results-quick
bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.run quick


.PHONY: bench bench-quick
