package ca

import (
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// htmlTitle finds an HTML page's title.
var htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// Snippet is a CA answer body as an error may quote it: one line of at
// most n characters, without control characters. An HTML page (what a
// load balancer, WAF or proxy in front of an API sends) is never quoted
// as markup: it is named "an HTML page" with its title, so an error log
// says "HTTP 502: an HTML page (502 Bad Gateway)" instead of carrying a
// page of tags.
func Snippet(body []byte, n int) string {
	s := strings.TrimSpace(string(body))
	if looksHTML(s) {
		title := ""
		if m := htmlTitle.FindStringSubmatch(s); m != nil {
			title = oneLine(html.UnescapeString(m[1]), n)
		}
		if title == "" {
			return "an HTML page"
		}
		return "an HTML page (" + title + ")"
	}
	return oneLine(s, n)
}

// looksHTML reports whether s is (the start of) an HTML document.
func looksHTML(s string) bool {
	head := strings.ToLower(s[:min(len(s), 512)])
	return strings.HasPrefix(head, "<!doctype html") || strings.HasPrefix(head, "<html") ||
		strings.HasPrefix(head, "<head") || strings.HasPrefix(head, "<body") ||
		strings.HasPrefix(head, "<?xml") && strings.Contains(head, "<html")
}

// oneLine folds s to one line of printable characters, cut to n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == utf8.RuneError }), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
