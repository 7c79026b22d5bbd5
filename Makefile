# certd — build, test, install.
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
UNITDIR  ?= /etc/systemd/system
CONFDIR  ?= /etc/certd
DOCDIR   ?= $(PREFIX)/share/doc/certd
MANDIR   ?= $(PREFIX)/share/man
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
GO       ?= go
GOFLAGS  ?=
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: man all build test test-short fuzz bench lint install uninstall clean run demo race chaos chaos-atlas

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -trimpath -ldflags '$(LDFLAGS)' -o bin/certd ./cmd/certd

# Every test, with the race detector, plus vet, gofmt and a short fuzz run.
test: lint
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=100000x

test-short:
	$(GO) test -count=1 ./...

# Budgets are counts of executions, not durations: with a duration, Go
# 1.26's fuzzing coordinator can fail a healthy run with "context deadline
# exceeded" at the end of the window on a loaded machine (golang/go#75804,
# fixed in Go 1.27). FUZZTIME=60s still works for a longer local run.
FUZZTIME ?= 500000x
# Every CA answer parser's fuzz target (package:target), each run for
# CA_FUZZTIME executions: 8 x 5000 keeps what `make test` adds under a minute.
CA_FUZZTIME ?= 5000x
CA_FUZZ := ca/atlas:FuzzAnswers ca/acme:FuzzProblemDocument ca/acme:FuzzRenewalInfo \
	ca/sectigo:FuzzAnswer ca/reseller:FuzzValidationDetails ca/reseller:FuzzErrorBody \
	ca/markmonitor:FuzzTokenAnswer ca/markmonitor:FuzzAnswers
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./config
	@set -e; for t in $(CA_FUZZ); do \
	  echo "fuzz $${t%%:*} $${t#*:} for $(CA_FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(CA_FUZZTIME) ./$${t%%:*}; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks print figures; they assert nothing.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# certd SIGKILLed at random instants while it orders from the Atlas
# simulator (slow issuance, reports that omit pending certificates); prints
# one line: kills, orders per certificate (must be 1), orphans, leftovers.
CHAOS_CERTS ?= 20
CHAOS_KILLS ?= 50
CHAOS_DELAY ?= 8s
# certd SIGKILLed at every failpoint and at random instants while it works
# certificates of every CA at once (Atlas, Sectigo, the reseller API,
# Markmonitor), against real Knot and nginx, with forced renewals between
# kills and a reload hook that records what each reload loaded; prints one
# line per invariant: kills, orders per certificate generation (max 1),
# orphans, lost keys, mixed reads, secrets, leftover artefacts, reloads
# onto a broken or stale set (N7), silent failures, violations (must be 0).
CHAOS_PER_CA ?= 5
chaos:
	CERTD_CHAOS_KILLS=$(or $(KILLS),1000) CERTD_CHAOS_PER_CA=$(CHAOS_PER_CA) \
	  $(GO) test -count=1 -timeout 180m -run '^TestChaosEveryCAKilledAtEveryFailpointAndAtRandom$$' -v ./cmd/certd | grep -E 'chaos campaign|^(--- |ok|FAIL)'

chaos-atlas:
	CERTD_CHAOS_CERTS=$(CHAOS_CERTS) CERTD_CHAOS_KILLS=$(CHAOS_KILLS) CERTD_CHAOS_DELAY=$(CHAOS_DELAY) \
	  $(GO) test -count=1 -timeout 30m -run '^TestAtlasKilledAtRandomInstantsNeverOrdersTwice$$' -v ./cmd/certd | grep -E 'atlas kill campaign|^(--- |ok|FAIL)'

# certd against lego and certbot on Pebble (installs them with apt-get).
race:
	bench/race.sh

# The whole lifecycle on loopback with nothing to install: the bundled
# Atlas simulator, an in-process DNS server, the HTTP responder and the
# daemon. Ctrl-C stops it; DEMO_FLAGS=-once exits after the first deploy.
demo: build
	./bin/certd demo -dir certd-demo $(DEMO_FLAGS)

# The units name $(BINDIR), $(CONFDIR) and $(DOCDIR) as installed; the
# directory the unit's ReadWritePaths= names ($(CONFDIR)/live, the
# example's deploy.dir) is created, since systemd refuses to start a unit
# whose ReadWritePaths= does not exist (it is marked optional as well).
UNITS := certd.service certd-once.service certd-once.timer
install: build
	install -D -m 0755 bin/certd $(DESTDIR)$(BINDIR)/certd
	for u in $(UNITS); do \
	  install -D -m 0644 systemd/$$u $(DESTDIR)$(UNITDIR)/$$u && \
	  sed -i -e 's#/usr/local/bin/certd#$(BINDIR)/certd#g' \
	    -e 's#/usr/local/share/doc/certd#$(DOCDIR)#g' \
	    -e 's#/etc/certd#$(CONFDIR)#g' $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	install -d -m 0755 $(DESTDIR)$(CONFDIR)/live
	install -D -m 0644 config.example.yaml $(DESTDIR)$(CONFDIR)/certd.yaml.example
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1
	bin/certd man > $(DESTDIR)$(MANDIR)/man1/certd.1

# The manual page, generated from the help text.
man: build
	bin/certd man > certd.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/certd $(DESTDIR)$(CONFDIR)/certd.yaml.example
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -rf $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(MANDIR)/man1/certd.1
	-rmdir $(DESTDIR)$(CONFDIR)/live 2>/dev/null

clean:
	rm -rf bin certd-demo certd.1
