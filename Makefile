# OkraInsight developer commands. Everything a machine needs is installed from here.
#   make demo   set up .venv and run the main job on the built-in default
#   make test   set up .venv with everything the tests need and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
EXTRAS ?= train,label,export,serve,dev
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: help venv demo test lint format clean web-assets train-grader

help:
	@echo "make demo    set up and run the main job on the built-in default"
	@echo "make test    set up and run the whole test suite"
	@echo "make lint    ruff check of the package, tests and benchmarks"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet "pip>=24" wheel

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/okra segment examples --out $(DEMO_OUT) --model default
	@echo "Demo done: open $(DEMO_OUT)/report.html in a browser (masks, overlays, cut-outs, results.json beside it)."

# The built-in default model (v0.12)'s recipe. v0.9: render the data (tools/prepare_default_data.py, with the real pods
# of white_01 and white_04 and the odd-numbered real negatives when ../shared/data holds them), train the width-0.75
# student from scratch with green surroundings for three in ten okra images (configs/default-gpu3.yaml: batches
# augmented on the GPU; v0.9's run was stopped by a 5.6-minute cap on one H200 after 76 of these 119 epochs; many hours
# on a CPU), fine-tune twice on a CPU (configs/default-round10.yaml; training seeds 0 and 1), average the three with
# weights 6,1,1 (okra average). v0.10: fine-tune that average four times on a CPU from fresh scenes with white_02's
# pods pasted in too (configs/default-round11.yaml, then configs/default-round12.yaml with zoom-out; seeds 0 and 1
# each), average v0.9 and the four with weights 2,1,1,1,1, install into src/okrainsight/models/default (fp16 weights +
# ONNX with int8 convolution weights, tiles 1,2, flips h,v,hv). Every step renders with the current renderer (v21;
# v0.9's steps rendered v16, v0.10's fine-tunes v18 and v19, docs/synth.md). All 119 epochs and GPU training that is
# not bit-exact give a close model, not the same one (docs/model-card.md). v0.11: fine-tune v0.10 twice on renderer-v21
# scenes (configs/default-round13.yaml, seeds 0 and 1) and average v0.10 and the two, 2:1:1. v0.12: fine-tune v0.11
# twice on plant- and pile-heavy renderer-v21 scenes (three plant scenes, three piles and two negatives to one of each
# other kind: PLANT_PILE_KINDS) and average v0.11 and the two, 3:4:4.
DEFAULT_DATA ?= data/default
DEFAULT_RUN ?= runs/default
REAL_OKRA ?= ../shared/data/real-okra
REAL_NEGATIVES ?= ../shared/data/real-negatives
DEFAULT_PODS = --pods $(REAL_OKRA) --pod-stems white_01,white_04_bunch --pod-fraction 0.2 --negatives $(REAL_NEGATIVES)
PLANT_PILE_KINDS = plant,plant,plant,pile,pile,pile,negative,negative,produce,white,cloth,wood,bunch,shop,plate,hands,paper,board
DEFAULT_PODS3 = --pods $(REAL_OKRA) --pod-stems white_01,white_02,white_04_bunch --pod-fraction 0.2 \
	--negatives $(REAL_NEGATIVES)
# Two CPU fine-tunes (training seeds 0 and 1) with configs/default-round13.yaml: $(1) data, $(2) run prefix, $(3) donor.
finetune_round13 = for s in 0 1; do $(BIN)/okra train $(1) --out $(2)$$s --config configs/default-round13.yaml \
	--init-from $(3) --seed $$s || exit 1; done
.PHONY: train-default
train-default: $(STAMP)
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-gpu --n 7000 --seed 7 --size 384x288 $(DEFAULT_PODS)
	$(BIN)/okra train $(DEFAULT_DATA)-gpu --out $(DEFAULT_RUN)-gpu --config configs/default-gpu3.yaml
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-r14 --n 3000 --seed 14 --size 384x288 $(DEFAULT_PODS)
	$(BIN)/okra train $(DEFAULT_DATA)-r14 --out $(DEFAULT_RUN)-r14s0 --config configs/default-round10.yaml \
		--init-from $(DEFAULT_RUN)-gpu --seed 0
	$(BIN)/okra train $(DEFAULT_DATA)-r14 --out $(DEFAULT_RUN)-r14s1 --config configs/default-round10.yaml \
		--init-from $(DEFAULT_RUN)-gpu --seed 1
	$(BIN)/okra average $(DEFAULT_RUN)-gpu $(DEFAULT_RUN)-r14s0 $(DEFAULT_RUN)-r14s1 --weights 6,1,1 \
		--out $(DEFAULT_RUN)-v09
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-r18 --n 3000 --seed 18 --size 384x288 $(DEFAULT_PODS3)
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-r19 --n 3000 --seed 19 --size 384x288 $(DEFAULT_PODS3)
	for s in 0 1; do \
		$(BIN)/okra train $(DEFAULT_DATA)-r18 --out $(DEFAULT_RUN)-r18s$$s --config configs/default-round11.yaml \
			--init-from $(DEFAULT_RUN)-v09 --seed $$s && \
		$(BIN)/okra train $(DEFAULT_DATA)-r19 --out $(DEFAULT_RUN)-z19s$$s --config configs/default-round12.yaml \
			--init-from $(DEFAULT_RUN)-v09 --seed $$s || exit 1; \
	done
	$(BIN)/okra average $(DEFAULT_RUN)-v09 $(DEFAULT_RUN)-r18s0 $(DEFAULT_RUN)-r18s1 $(DEFAULT_RUN)-z19s0 \
		$(DEFAULT_RUN)-z19s1 --weights 2,1,1,1,1 --out $(DEFAULT_RUN)-avg
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-r21 --n 3000 --seed 21 --size 384x288 $(DEFAULT_PODS3)
	$(call finetune_round13,$(DEFAULT_DATA)-r21,$(DEFAULT_RUN)-u21s,$(DEFAULT_RUN)-avg)
	$(BIN)/okra average $(DEFAULT_RUN)-avg $(DEFAULT_RUN)-u21s0 $(DEFAULT_RUN)-u21s1 --weights 2,1,1 \
		--out $(DEFAULT_RUN)-v011
	$(PY) tools/prepare_default_data.py --out $(DEFAULT_DATA)-p22 --n 3000 --seed 22 --size 384x288 $(DEFAULT_PODS3) \
		--kinds $(PLANT_PILE_KINDS)
	$(call finetune_round13,$(DEFAULT_DATA)-p22,$(DEFAULT_RUN)-p22s,$(DEFAULT_RUN)-v011)
	$(BIN)/okra average $(DEFAULT_RUN)-v011 $(DEFAULT_RUN)-p22s0 $(DEFAULT_RUN)-p22s1 --weights 3,4,4 \
		--out $(DEFAULT_RUN)-v012
	$(PY) tools/install_default_model.py $(DEFAULT_RUN)-v012 --recipe $(DEFAULT_DATA)-gpu/recipe.json \
		--recipe $(DEFAULT_DATA)-r14/recipe.json --recipe $(DEFAULT_DATA)-r18/recipe.json \
		--recipe $(DEFAULT_DATA)-r19/recipe.json --recipe $(DEFAULT_DATA)-r21/recipe.json \
		--recipe $(DEFAULT_DATA)-p22/recipe.json --zooms 1,2 --flips h,v,hv --threshold 0.3 --seed-threshold 0.7 \
		--int8-weights

# Front-end runtime for okra serve: onnxruntime-web and swagger-ui-dist (the /docs page) from npm
# (web/package-lock.json), copied into the package's static files; nothing is fetched from a CDN at run time.
VENDOR := src/okrainsight/server/static/vendor
ORT_DIST := web/node_modules/onnxruntime-web/dist
ORT_FILES := ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm \
	ort.webgpu.min.js ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm
SWAGGER_DIST := web/node_modules/swagger-ui-dist
SWAGGER_FILES := swagger-ui-bundle.js swagger-ui.css favicon-32x32.png

web-assets: $(VENDOR)/.stamp

$(VENDOR)/.stamp: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p $(VENDOR)
	cd $(ORT_DIST) && cp $(ORT_FILES) $(CURDIR)/$(VENDOR)/
	cd $(SWAGGER_DIST) && cp $(SWAGGER_FILES) $(CURDIR)/$(VENDOR)/
	touch $@

# The whole distillation loop (render, label with grabcut, train, evaluate, export); stages already done
# in runs/pipeline are skipped (okra pipeline ... --force redoes them).
.PHONY: pipeline
pipeline: $(STAMP)
	$(BIN)/okra pipeline configs/pipeline.yaml --out runs/pipeline

test: $(STAMP) web-assets
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench tools
	$(BIN)/ruff format src tests bench tools

# The built-in tip-break grader (demonstration only; see docs/grading.md), reproducible from seed 0;
# --cnn adds the pod-crop CNN (cnn.onnx) that the live page of okra serve runs per pod.
GRADER_DIR := src/okrainsight/models/grader-default

train-grader: $(STAMP)
	$(BIN)/okra grade train-synth $(GRADER_DIR) --n 600 --n-negative 400 --seed 0 --size 256x192 --cnn

# Mobile export of the built-in default model: ONNX, Core ML, ExecuTorch, TorchScript, each parity-checked.
EXPORT_MODEL ?= default
EXPORT_DIR ?= dist/models
.PHONY: export
export: $(STAMP)
	$(BIN)/okra export $(EXPORT_MODEL) --format onnx --out $(EXPORT_DIR)/okra.onnx
	$(BIN)/okra export $(EXPORT_MODEL) --format coreml --fp16 --out $(EXPORT_DIR)/okra.mlpackage
	$(BIN)/okra export $(EXPORT_MODEL) --format executorch --out $(EXPORT_DIR)/okra.pte
	$(BIN)/okra export $(EXPORT_MODEL) --format torchscript --out $(EXPORT_DIR)/okra.pt

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build dist src/*.egg-info
