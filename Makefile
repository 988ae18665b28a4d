# leadstreams: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
KAFKA  := deploy/kafka

.PHONY: install demo test lint unit reliability bench tools browser kafka-up kafka-down kafka-clean kafka-fetch clean schema

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

kafka-fetch:
	$(KAFKA)/fetch.sh >/dev/null

## promtool and prometheus (Debian's package) for the rule tests and the end-to-end check;
## kubectl or kustomize to render deploy/k8s.
tools:
	deploy/prometheus/ensure-promtool.sh
	deploy/k8s/ensure-kustomize.sh

## Debian's chromium and chromium-driver: the web console's browser tests (tests/browser).
browser:
	deploy/console/ensure-chromium.sh

## Start a local broker in .kafka/ (prints its bootstrap address; the leadstreams commands
## find it in .kafka/bootstrap); stop it with kafka-down. It keeps its port and topics from
## one kafka-up to the next; kafka-clean stops it and wipes them.
kafka-up:
	$(KAFKA)/start.sh .kafka

kafka-down:
	$(KAFKA)/stop.sh .kafka

kafka-clean:
	$(KAFKA)/stop.sh .kafka
	rm -rf .kafka

lint: install
	$(BIN)/ruff check streams agents tests examples
	$(BIN)/lint-imports

## schemas/flow.schema.json from the components' fragments (a test fails until it is current).
schema: install
	$(BIN)/python -m streams.schema_file

## Everything: lint, engine unit tests, the real-broker integration tests and the web
## console in a real headless Chromium.
## Kafka tests are never skipped: a missing broker fails them.
test: install kafka-fetch tools browser lint
	$(KAFKA)/with-kafka.sh $(BIN)/python -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

## Engine tests only (no broker needed).
unit: install tools
	$(BIN)/python -m pytest -m "not kafka" --ignore=tests/browser $(PYTEST_ARGS)

## Fault injection on a real broker (kill -9, broker restart, partner faults, fuzz, secrets),
## then notifications at full size (a 2 s webhook, a partner outage, kill -9; ~7 min).
reliability: install kafka-fetch
	$(KAFKA)/with-kafka.sh $(BIN)/python examples/reliability/run_reliability.py $(RELIABILITY_ARGS)
	$(KAFKA)/with-kafka.sh $(BIN)/python examples/reliability/notify_measure.py $(NOTIFY_ARGS)

## Throughput, latency, rate-limit precision and memory: the worker vs a hand-written
## aiokafka + aiohttp baseline (examples/bench/); e.g. BENCH_ARGS="--quick" or "--only P1,P4".
bench: install kafka-fetch
	$(KAFKA)/with-kafka.sh $(BIN)/python examples/bench/run_bench.py $(BENCH_ARGS)

## KEEP=1 keeps the worker and its web console up until Ctrl-C.
demo: install kafka-fetch
	$(KAFKA)/with-kafka.sh $(BIN)/python examples/demo/run_demo.py $(if $(KEEP),--keep)

clean:
	rm -rf $(VENV) .kafka build *.egg-info
