package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

const completionUsage = `usage: certd completion bash|zsh|fish

Prints a completion script for the shell. For example:
  certd completion bash > /etc/bash_completion.d/certd
  certd completion zsh  > "${fpath[1]}/_certd"
  certd completion fish > ~/.config/fish/completions/certd.fish
`

// cliCommand is one command as the completions know it. The flags are
// checked against each command's -h by a test, so they cannot drift.
type cliCommand struct {
	name  string
	subs  []string // subcommands (claims list, ...); the flags follow them
	flags []string // without the dash
	names bool     // takes a certificate name
}

var cliCommands = []cliCommand{
	{name: "run", flags: []string{"config", "once"}},
	{name: "check-config", flags: []string{"config", "skip-credentials"}},
	{name: "status", flags: []string{"config", "json", "no-daemon"}, names: true},
	{name: "events", flags: []string{"config", "since", "n", "json", "f"}, names: true},
	{name: "renew", flags: []string{"config", "force", "dry-run"}, names: true},
	{name: "rollback", flags: []string{"config"}, names: true},
	{name: "revoke", flags: []string{"config", "reason"}, names: true},
	{name: "delete", flags: []string{"config"}, names: true},
	{name: "hooks", subs: []string{"test"}, flags: []string{"config"}, names: true},
	{name: "import", subs: []string{"certbot", "lego"}, flags: []string{"config", "dry-run"}},
	{name: "claims", subs: []string{"list", "verify", "reassert", "delete"}, flags: []string{"config", "account", "json"}},
	{name: "orders", subs: []string{"list", "found", "absent", "abandon"}, flags: []string{"config"}, names: true},
	{name: "fleet", subs: []string{"keygen"}},
	{name: "store", subs: []string{"migrate"}, flags: []string{"config", "from"}},
	{name: "demo", flags: []string{"dir", "once", "lifetime", "renew-after", "timeout"}},
	{name: "sim", subs: []string{"atlas", "sectigo", "reseller", "markmonitor"}},
	{name: "completion", subs: []string{"bash", "zsh", "fish"}},
	{name: "man"},
	{name: "version"},
	{name: "help"},
}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, completionUsage)
		return exitUsage
	}
	switch args[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion())
	case "zsh":
		fmt.Fprint(stdout, zshCompletion())
	case "fish":
		fmt.Fprint(stdout, fishCompletion())
	default:
		fmt.Fprint(stderr, completionUsage)
		return exitUsage
	}
	return exitOK
}

func commandNames() []string {
	var out []string
	for _, c := range cliCommands {
		out = append(out, c.name)
	}
	return out
}

func dashed(flags []string) string {
	var out []string
	for _, f := range flags {
		out = append(out, "-"+f)
	}
	return strings.Join(out, " ")
}

// Certificate names are read from the configuration with a cheap grep-like
// look at "name:" lines, so completing never opens the store.
const namesSnippet = `sed -n 's/^[[:space:]-]*name:[[:space:]]*\([A-Za-z0-9._-]*\).*/\1/p' "${CERTD_CONFIG:-/etc/certd/certd.yaml}" 2>/dev/null`

// fishNamesSnippet is namesSnippet in fish's syntax, for inside single
// quotes.
const fishNamesSnippet = `sed -n "s/^[[:space:]-]*name:[[:space:]]*\([A-Za-z0-9._-]*\).*/\1/p" (set -q CERTD_CONFIG; and echo $CERTD_CONFIG; or echo /etc/certd/certd.yaml) 2>/dev/null`

func bashCompletion() string {
	var b strings.Builder
	b.WriteString("# bash completion for certd (certd completion bash)\n")
	b.WriteString("_certd() {\n")
	b.WriteString("    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words=''\n")
	b.WriteString("    if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(&b, "        COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(commandNames(), " "))
	b.WriteString("        return 0\n    fi\n")
	b.WriteString("    case \"${COMP_WORDS[COMP_CWORD-1]}\" in\n")
	b.WriteString("        -config|-dir) COMPREPLY=($(compgen -f -- \"$cur\")); return 0 ;;\n")
	b.WriteString("    esac\n")
	b.WriteString("    case \"$cmd\" in\n")
	for _, c := range cliCommands {
		if len(c.flags) == 0 && len(c.subs) == 0 && !c.names {
			continue
		}
		words := dashed(c.flags)
		fmt.Fprintf(&b, "        %s)\n", c.name)
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "            if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return 0; fi\n", strings.Join(c.subs, " "))
		}
		fmt.Fprintf(&b, "            words=%q\n", words)
		if c.names {
			fmt.Fprintf(&b, "            words=\"$words $(%s)\"\n", namesSnippet)
		}
		b.WriteString("            ;;\n")
	}
	b.WriteString("    esac\n")
	b.WriteString("    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n")
	b.WriteString("}\ncomplete -F _certd certd\n")
	return b.String()
}

func zshCompletion() string {
	var b strings.Builder
	b.WriteString("#compdef certd\n# zsh completion for certd (certd completion zsh)\n")
	b.WriteString("_certd() {\n")
	b.WriteString("    local -a words_\n")
	b.WriteString("    if (( CURRENT == 2 )); then\n")
	fmt.Fprintf(&b, "        compadd -- %s\n", strings.Join(commandNames(), " "))
	b.WriteString("        return\n    fi\n")
	b.WriteString("    case ${words[CURRENT-1]} in\n        -config|-dir) _files; return ;;\n    esac\n")
	b.WriteString("    case ${words[2]} in\n")
	for _, c := range cliCommands {
		if len(c.flags) == 0 && len(c.subs) == 0 && !c.names {
			continue
		}
		fmt.Fprintf(&b, "        %s)\n", c.name)
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "            if (( CURRENT == 3 )); then compadd -- %s; return; fi\n", strings.Join(c.subs, " "))
		}
		fmt.Fprintf(&b, "            words_=(%s)\n", dashed(c.flags))
		if c.names {
			fmt.Fprintf(&b, "            words_+=(${(f)\"$(%s)\"})\n", namesSnippet)
		}
		b.WriteString("            ;;\n")
	}
	b.WriteString("    esac\n")
	b.WriteString("    (( ${#words_} )) && compadd -- $words_\n")
	b.WriteString("}\n_certd \"$@\"\n")
	return b.String()
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for certd (certd completion fish)\n")
	b.WriteString("complete -c certd -f\n")
	fmt.Fprintf(&b, "complete -c certd -n __fish_use_subcommand -a '%s'\n", strings.Join(commandNames(), " "))
	for _, c := range cliCommands {
		cond := "__fish_seen_subcommand_from " + c.name
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "complete -c certd -n '%s' -a '%s'\n", cond, strings.Join(c.subs, " "))
		}
		flags := append([]string(nil), c.flags...)
		sort.Strings(flags)
		for _, f := range flags {
			// fish's -o is an old-style (single dash) long option.
			fmt.Fprintf(&b, "complete -c certd -n '%s' -o %s", cond, f)
			if f == "config" || f == "dir" {
				b.WriteString(" -r -F")
			}
			b.WriteString("\n")
		}
		if c.names {
			fmt.Fprintf(&b, "complete -c certd -n '%s' -a '(%s)'\n", cond, fishNamesSnippet)
		}
	}
	return b.String()
}
