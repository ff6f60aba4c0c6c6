# Reliability and security suites (docs/security.md). Included by the top-level Makefile.
#
#   make test-fuzz          the fuzz campaigns (100,000 inputs per target); `make test` runs them
#                           beside e2e (mk/e2e.mk); ~2 minutes
#   make test-reliability   fault matrix, socket attacks, overload, crash safety, 100,000-call
#                           soak and the suite-wide secret scan; ~6 minutes on 2 cores
#   make fuzz-nightly       1,000,000 inputs per target, 5,000 hypothesis examples, 20,000 per
#                           method over the socket
#   make soak               the full 1,000,000-call soak; prints its figures as JSON
#   make attack-run         every attack at once for ATTACK_SECONDS (600) while a real
#                           client calls once a second; fails on a failed call, RSS >= 384 MiB or
#                           descriptors/threads not back to baseline (needs root)
#
# The suites deselect themselves from `pytest tests` (stage pytest-core) so they run once, here;
# KMS_APPLIANCE_RELIABILITY=1 (or naming their directory) selects them. Figures are printed at
# the end of the run; RELIABILITY_FIGURES=path.json also writes them as JSON (test-fuzz's
# into path-fuzz.json).

RELIABILITY_PYTEST_ARGS ?=
RELIABILITY_FIGURES ?=
SOAK_CALLS ?= 1000000
ATTACK_SECONDS ?= 600

.PHONY: test-fuzz test-reliability fuzz-nightly soak attack-run
TEST_STAGES += test-reliability

test-fuzz: $(STAMP)
	KMS_APPLIANCE_RELIABILITY=1 KMS_APPLIANCE_FIGURES=$(if $(RELIABILITY_FIGURES),$(basename $(RELIABILITY_FIGURES))-fuzz.json) \
	$(PY) -m pytest -q -rxX --durations=10 -p no:cacheprovider tests/fuzz $(RELIABILITY_PYTEST_ARGS)

test-reliability: $(STAMP)
	KMS_APPLIANCE_RELIABILITY=1 KMS_APPLIANCE_FIGURES=$(RELIABILITY_FIGURES) \
	$(PY) -m pytest -q -rxX --durations=15 -p no:cacheprovider tests/reliability $(RELIABILITY_PYTEST_ARGS)

fuzz-nightly: $(STAMP)
	KMS_APPLIANCE_RELIABILITY=1 KMS_APPLIANCE_FUZZ_EXAMPLES=1000000 \
	KMS_APPLIANCE_HYPOTHESIS_EXAMPLES=5000 KMS_APPLIANCE_SOCKET_FUZZ=20000 \
	KMS_APPLIANCE_FIGURES=$(RELIABILITY_FIGURES) \
	$(PY) -m pytest -q -rxX -p no:cacheprovider tests/fuzz $(RELIABILITY_PYTEST_ARGS)

soak: $(STAMP)
	$(PY) -m tests.reliability.soak --calls $(SOAK_CALLS) $(if $(RELIABILITY_FIGURES),--json $(RELIABILITY_FIGURES))

attack-run: $(STAMP)
	$(PY) -m tests.reliability.attack_mix --seconds $(ATTACK_SECONDS) $(if $(RELIABILITY_FIGURES),--json $(RELIABILITY_FIGURES))
