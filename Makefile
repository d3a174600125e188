# lnlib: two commands set everything up on a fresh machine.
#   make book   -- venv, data, execute the notebooks, build the Jupyter Book (offline, CPU)
#   make test   -- venv, data, lint, test suite (what CI runs)
VENV   ?= .venv
PY     := $(VENV)/bin/python
QUICK  ?= 0
PROFILE := $(if $(filter 1 true yes,$(QUICK)),quick,full)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv data test lint book notebooks mathjax bench labs lab handout grade hooks clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Offline data: Fashion-MNIST from Debian's package, copied into data/ and checked against SHA-256 digests; the
# font packages the letters and scripts OOD sets are rendered from (lnlib/glyphs.py: FONT_PACKAGES, ~76 MB).
# SETS="cifar10 svhn ..." adds sets that need internet once (MD5-checked, resumable; lnlib/paper_sets.py).
data: venv
	@if [ ! -f $(DEBIAN_FMNIST)/train-images-idx3-ubyte.gz ] && [ ! -f data/cache/fashion_mnist.pt ]; then \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; } || true; \
	fi
	@missing="$$($(PY) -c 'from lnlib.glyphs import missing_packages; print(*missing_packages())')"; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$missing || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $$missing; } || true; \
	fi
	$(PY) -m lnlib data fetch fashion_mnist $(SETS)

lint: venv
	$(PY) -m ruff check lnlib tests book nbs benchmarks
	$(VENV)/bin/nbstripout --verify nbs/*.ipynb nbs/labs/*.ipynb

test: data lint
	$(PY) -m pytest

notebooks: data
	$(PY) book/execute.py --profile $(PROFILE)

# MathJax 3 from the npm registry (SHA-512 checked) into book/static/: the built book reads offline.
mathjax: venv
	$(PY) book/mathjax.py

# The chapters, then Sphinx; both timed into _build/timings-<profile>.json, with progress lines as it goes.
book: data mathjax
	$(PY) book/execute.py --profile $(PROFILE) --sphinx
	@echo "open _build/html/index.html"

# Training throughput, side by side in one process: lnlib's loop, a torchvision DataLoader loop, matmul FLOP/s.
# CPU cases here; on a machine with a GPU the wrn40_2 GPU case too. Table on stdout, JSON in benchmarks/results/.
bench: data
	$(PY) benchmarks/train_throughput.py

# Course labs (nbgrader; lnlib/course.py). The sources, with solutions and hidden tests: nbs/labs/*.ipynb.
# labs:    the student versions, by `nbgrader generate_assignment`, into nbs/labs/student/
# lab:     JupyterLab on the student versions (what a student does in the hand-out: `make lab` there)
# handout: what students receive, into _build/handout/ (no solution, no hidden test: checked)
# grade:   SUBMISSIONS=folder of <student>/<lab>.ipynb -> nbgrader autograde -> data/course/grades.csv
labs: data
	$(PY) -m lnlib.course students

lab: labs
	$(VENV)/bin/jupyter lab --notebook-dir=nbs/labs/student --ZMQChannelsWebsocketConnection.kernel_ws_protocol=  # lnlib.course.LAB_FLAGS

handout: venv
	$(PY) -m lnlib.course handout

grade: data
	@[ -n "$(SUBMISSIONS)" ] || { echo "make grade SUBMISSIONS=<folder of <student>/<lab>.ipynb>"; exit 2; }
	$(PY) -m lnlib.course grade $(SUBMISSIONS)

# Strip notebook outputs (and papermill metadata) on `git add`.
hooks: venv
	$(VENV)/bin/nbstripout --install --attributes .gitattributes
	git config filter.nbstripout.extrakeys "metadata.papermill cell.metadata.papermill cell.metadata.execution"

clean:
	rm -rf _build book/generated
