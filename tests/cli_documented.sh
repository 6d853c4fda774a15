#!/bin/sh
# Every subcommand `tandem --help` lists appears in the README as a command line
# (`$T NAME` or `tandem NAME`).   cli_documented.sh TANDEM README
set -eu
cmds=$("$1" --help | awk '/^Subcommands:/ { on = 1; next } on && NF { print $1 }')
[ -n "$cmds" ] || { echo "no subcommands in tandem --help"; exit 1; }
missing=""
for c in $cmds; do
  grep -Eq "(\\\$T|tandem) $c( |\$)" "$2" || missing="$missing $c"
done
if [ -n "$missing" ]; then echo "not documented in the README:$missing"; exit 1; fi
echo "every subcommand is documented: $(echo $cmds | wc -w)"
