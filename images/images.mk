# Local Docker images (images/README.md). Included from the top-level Makefile.
#   make images                     build every stale image
#   make images IMAGES="fn-test"    just that one (and its parents)
#   make images DOCKER=/usr/bin/docker
PYTHON ?= python3
IMAGES ?=

.PHONY: images
images:
	$(if $(DOCKER),DOCKER=$(DOCKER) )$(PYTHON) images/build.py $(IMAGES)
