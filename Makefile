# sortloop: the two commands a newcomer runs are `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done
RUN_STAMP := $(VENV)/.run-setup-done
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/var/ultralytics

.PHONY: setup setup-run system-deps station-deps run test lint typecheck test-slow test-install bench clean

# `make run`: the station and its console only (no torch, no test tools, no browser, no MQTT broker).
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[ui]'
	touch $(RUN_STAMP)

# Everything else (`make test`, training, benchmarks): the run set-up plus training, dev and postgres extras.
$(STAMP): $(RUN_STAMP)
	# torch and torchvision lie on this machine's disk (CPU use; the CUDA build also runs on the CPU)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[training,ui,dev,postgres]'
	touch $(STAMP)

# Debian's apt waits up to APT_LOCK_WAIT seconds for a package lock another apt holds (instead of failing).
APT_LOCK_WAIT ?= 300
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT)

# What the station itself needs from Debian: OpenCV's libGL and GLib (only when cv2 does not import).
station-deps: $(RUN_STAMP)
	@if ! $(BIN)/python -c "import cv2" 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			$(APT_GET) update -q && $(APT_GET) install -y -q libgl1 libglib2.0-0; \
		else echo "install Debian packages libgl1 and libglib2.0-0 (sudo apt-get install libgl1 libglib2.0-0)"; fi; \
	fi

system-deps:
	@# mosquitto (MQTT broker for tests) and chromium (browser tests) come from Debian: tests only.
	@if ! command -v mosquitto >/dev/null || ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			$(APT_GET) update -q && $(APT_GET) install -y -q mosquitto chromium; \
		else echo "install Debian packages mosquitto and chromium (sudo apt-get install mosquitto chromium)"; fi; \
	fi

setup-run: $(RUN_STAMP) station-deps

setup: setup-run $(STAMP) system-deps

run: setup-run
	$(BIN)/sortloop run --config configs/station.yaml

lint: setup
	$(BIN)/ruff check station training ui tests bench
	$(BIN)/mypy

# -ra (pyproject's addopts) lists every skip with its reason, and tests/conftest.py ends with the count by reason;
# under CI=true a missing ../shared file fails the run instead (tests/shared_data.py).
test: setup lint
	$(BIN)/pytest -q

# The station-only install: the wheel in a fresh venv without extras (a few minutes; .ci/run runs it).
test-install: setup
	$(BIN)/pytest -q -m slow tests/test_install.py

test-slow: setup
	$(BIN)/pytest -q -m slow

bench: setup
	$(BIN)/python bench/station_fps.py

clean:
	rm -rf var runs work .mypy_cache .ruff_cache .pytest_cache

# The default model (models/sortloop-default.onnx, sortloop-default-5): the commands its model card names. The
# two training steps need one CUDA GPU (stage 1 ran 0.13 h on an NVIDIA H200, stage 2 0.14 h on an NVIDIA H100,
# each with 16 CPU cores); everything else runs on the CPU. The build reads every image of ../shared (no
# --limit); configs/default-stage2.data.yaml adds the procedural simulator renders of data/sim-extra; `data pack`
# shrinks both to the training size (320 px) so the set can travel to the GPU machine. Stage 1 trains from COCO
# YOLO11n (that run alone was sortloop-default-4), stage 2 continues from its best checkpoint. The model is
# trained at 320 and exported at 256 x 448, a 16:9 belt frame at 0.35 scale.
DATA_DIR ?= data/sortloop
.PHONY: default-model default-model-cpu crop-classifier
default-model: setup
	$(BIN)/sortloop data build $(DATA_DIR) --seed 0 --synth-n 1000 --sim-n 1200 --imgsz 512
	$(BIN)/sortloop sim render --n 1600 --seed 7 --width 640 --height 352 --out data/sim-extra
	rm -rf data/packed
	$(BIN)/sortloop data pack configs/default-stage2.data.yaml data/packed --long-side 320 --quality 80 \
		--max-val 300
	$(BIN)/sortloop train --config configs/training-gpu.yaml
	$(BIN)/sortloop train --config configs/training-gpu-stage2.yaml
	$(BIN)/sortloop export --weights runs/default5/weights/best.pt --out models/sortloop-default.onnx \
		--version sortloop-default-5 --imgsz 256,448 --data $(DATA_DIR)/data.yaml
	cp runs/default5/weights/best.pt models/sortloop-default.pt

# The CPU-only recipe of the previous default model, sortloop-default-3 (about four hours on 2 cores; the model
# card's history). Stage 1 fine-tunes COCO YOLO11n on a build of at most 1,000 images per source; stage 2
# continues on the build plus the simulator renders; stage 3 continues on the same data, rebuilt with the
# training crops also written as photos.
default-model-cpu: setup
	$(BIN)/sortloop data build $(DATA_DIR) --seed 0 --synth-n 1000 --sim-n 1200 --limit 1000 --imgsz 640 \
		--no-crop-photos --spare 1000
	$(BIN)/sortloop train --data $(DATA_DIR)/data.yaml --name default --epochs 7 --close-mosaic 2 --imgsz 320 \
		--batch 16 --seed 0 --patience 50
	$(BIN)/sortloop sim render --n 1600 --seed 7 --width 640 --height 352 --out data/sim-extra
	$(BIN)/sortloop train --data configs/default-stage2.data.yaml --base-weights runs/default/weights/best.pt \
		--name default2 --epochs 8 --close-mosaic 2 --imgsz 320 --batch 16 --seed 0 --patience 50
	$(BIN)/sortloop data build $(DATA_DIR) --seed 0 --synth-n 1000 --sim-n 1200 --limit 1000 --imgsz 640 \
		--spare 1000
	$(BIN)/sortloop train --data configs/default-stage2.data.yaml --base-weights runs/default2/weights/best.pt \
		--name default3 --epochs 10 --close-mosaic 2 --imgsz 320 --batch 16 --seed 0 --patience 50
	$(BIN)/sortloop export --weights runs/default3/weights/best.pt --out models/sortloop-default.onnx \
		--version sortloop-default-3 --imgsz 320,576 --data $(DATA_DIR)/data.yaml
	cp runs/default3/weights/best.pt models/sortloop-default.pt

# The crop classifier (models/sortloop-crops.onnx, the station's second look, model.classifier): every labelled
# box of the default model's build (which must exist: the first step of default-model) and of 1,200 full-scale
# simulator renders, cut as the station cuts its evidence crops; YOLO11n-cls from the COCO detection backbone,
# trained on the 2 CPU cores within a 1.2-hour budget (Ultralytics fits the epochs and schedule to it), exported
# and checked against the checkpoint on the validation crops. CROPS_DIR is a working folder outside the repository.
CROPS_DIR ?= work/crops
crop-classifier: setup
	rm -rf $(CROPS_DIR)
	$(BIN)/python bench/crop_classifier.py crops $(DATA_DIR) $(CROPS_DIR)/ds --renders 1200
	$(BIN)/python bench/crop_classifier.py train $(CROPS_DIR)/ds $(CROPS_DIR)/runs --epochs 40 --time-hours 1.2 \
		--imgsz 128
	$(BIN)/python bench/crop_classifier.py export $(CROPS_DIR)/runs/crops/weights/best.pt models/sortloop-crops.onnx \
		--version sortloop-crops-1 --check $(CROPS_DIR)/ds/val

# The CPU candidate sortloop-default-6 (docs/recognition.md; not adopted: it failed the adoption rule written
# before its run): the build with the garment photos and the plain scenes, the shipped model's weights recovered
# from its ONNX file, then configs/training-cpu-real.yaml (1.4 h on 2 cores, 4 epochs), export, and the
# cross-source report of the candidate beside the shipped model.
.PHONY: default-model-real
default-model-real: setup
	$(BIN)/sortloop data build $(DATA_DIR) --seed 0 --synth-n 1000 --sim-n 1200 --plain-n 1500 --imgsz 512
	mkdir -p work/real1
	$(BIN)/python -c "import yaml, pathlib; d = yaml.safe_load(open('$(DATA_DIR)/data.yaml')); \
		v = sorted((pathlib.Path(d['path']) / 'images/val').iterdir()); \
		pathlib.Path('work/real1/val300.txt').write_text(''.join(f'{v[i * len(v) // 300].absolute()}\n' for i in range(300))); \
		d['val'] = str(pathlib.Path('work/real1/val300.txt').resolve()); \
		pathlib.Path('work/real1/data.yaml').write_text(yaml.safe_dump(d, sort_keys=False))"
	$(BIN)/sortloop recover models/sortloop-default.onnx --out work/default5.pt --force
	$(BIN)/sortloop train --config configs/training-cpu-real.yaml
	$(BIN)/sortloop export --weights runs/real1/weights/best.pt --out work/real1/sortloop-default-6.onnx \
		--version sortloop-default-6 --imgsz 256,448 --data $(DATA_DIR)/data.yaml
	$(BIN)/sortloop eval --by-source --model models/sortloop-default.onnx --data $(DATA_DIR) --out work/eval/default5
	$(BIN)/sortloop eval --by-source --model work/real1/sortloop-default-6.onnx --data $(DATA_DIR) \
		--out work/eval/default6
