#!/bin/sh
# fn-shell: a cold-format function (one container per call, request on stdin, response
# on stdout). Answers "Hello, <stdin without its trailing newlines>!", or "Hello, world!"
# when that is empty, and logs "fn-shell: <n> bytes in" on stderr. Exit status 0.
# (A shell variable cannot hold NUL bytes: they are neither counted nor echoed.)

# The "x" keeps the trailing newlines that command substitution would strip.
in=$(cat; echo x)
in=${in%x}
n=$(printf '%s' "$in" | wc -c)
name=$(printf '%s' "$in")
printf 'Hello, %s!\n' "${name:-world}"
echo "fn-shell: $((n)) bytes in" >&2
