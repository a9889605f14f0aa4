# The README's two commands. Each creates .venv and installs the package when missing or out of date.
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/cardioseg
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo_output
BUNDLE := bundles/cardiac_sax_seg

.PHONY: demo test lint clean dciodvfy

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev,deploy]'
	touch $(STAMP)

# Holoscan (the Deploy SDK's runtime, imported with MONAI) asks for a 32 MiB stack, and warns without it.
STACK := ulimit -s 32768 2>/dev/null || true;

demo: $(STAMP)
	$(STACK) $(CLI) phantom --patients 10 --studies --out $(DEMO)/phantom --overwrite
	$(STACK) $(CLI) data summary $(DEMO)/phantom
	$(STACK) $(CLI) data summary $(DEMO)/phantom/dicom
	$(STACK) $(CLI) data contact-sheet $(DEMO)/phantom --out $(DEMO)/contact_sheet.png --max 8 --overwrite
	$(STACK) $(CLI) pretrain --method byol --encoder resnet18 --data $(DEMO)/phantom --epochs 1 \
	    --out $(DEMO)/pretrain --image_size 64 --batch_size 32 --warmup_epochs 1 --overwrite True
	$(STACK) $(PY) -m monai.bundle run training --config_file $(BUNDLE)/configs/train.json \
	    --dataset_dir $(DEMO)/phantom --dataset_format phantom --encoder resnet18 --image_size 96 \
	    --epochs 8 --batch_size 8 --pretrained $(DEMO)/pretrain/models/final.pt --output_dir $(DEMO)/run --overwrite True
	$(STACK) $(CLI) curves $(DEMO)/run --out $(DEMO)/convergence.png --overwrite
	$(STACK) $(PY) -m monai.bundle run --config_file $(BUNDLE)/configs/evaluate.json \
	    --run_dir $(DEMO)/run --dataset_dir $(DEMO)/phantom
	$(STACK) $(CLI) export $(DEMO)/run
	$(STACK) $(PY) -m monai.bundle run --config_file $(DEMO)/run/cardiac_sax_seg/configs/inference.json \
	    --bundle_root $(DEMO)/run/cardiac_sax_seg --dataset_dir $(DEMO)/phantom/patient001 --output_dir $(DEMO)/seg
	rm -rf $(DEMO)/study
	$(STACK) $(PY) app -i $(DEMO)/phantom/studies/patient010 -o $(DEMO)/study -m $(DEMO)/run/cardiac_sax_seg
	$(STACK) $(CLI) phantom-compare $(DEMO)/study/indices.json $(DEMO)/phantom/ground_truth.json
	$(STACK) $(CLI) study --config paper --config demo --out $(DEMO)/experiment --overwrite true

# dciodvfy (Debian's dicom3tools) validates the app's DICOM SEG in the tests; they skip, saying why, without it.
dciodvfy:
	@command -v dciodvfy >/dev/null || apt-get install -y -qq dicom3tools >/dev/null 2>&1 \
	    || (apt-get update -qq && apt-get install -y -qq dicom3tools) >/dev/null 2>&1 \
	    || echo "dciodvfy could not be installed: the DICOM SEG validation test will be skipped"

test: $(STAMP) dciodvfy
	$(STACK) $(PY) -m pytest -q --durations=10

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
