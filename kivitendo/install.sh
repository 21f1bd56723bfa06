#!/bin/sh
# Install (or remove) the kivi-otrs order-screen button in a kivitendo 4.1+ tree.
#
#   sh install.sh --check /var/www/kivitendo-erp      # say what would be done; changes nothing
#   sh install.sh /var/www/kivitendo-erp              # install (again: a no-op when nothing changed)
#   sh install.sh --uninstall /var/www/kivitendo-erp  # restore every file byte for byte
#
# Copies three files of our own into the tree (the controller, the script under
# public/js/ and a small template of ours) and inserts ONE line into each of
# kivitendo's two item-input templates (design40; the row above or below the
# positions). Each line is inserted after an anchor line that must occur exactly
# once; if an anchor is missing, nothing at all is changed. Originals are kept in
# <tree>/.kivi-otrs/ with their sha256; --uninstall puts them back and removes
# that directory. Restart the web server (FastCGI) after install and uninstall.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
mode=install
case "${1:-}" in
  --uninstall) mode=uninstall; shift ;;
  --check)     mode=check;     shift ;;
  -h|--help)   sed -n '2,14p' "$0"; exit 0 ;;
  -*)          echo "Error: unknown option $1 (use --check, --uninstall or --help)" >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { echo "Error: give exactly one kivitendo root directory, e.g. sh install.sh --check /var/www/kivitendo-erp" >&2; exit 2; }
root=$(cd "$1" 2>/dev/null && pwd) || { echo "Error: $1 is not a directory" >&2; exit 2; }

for tool in awk sha256sum grep; do
  command -v "$tool" >/dev/null 2>&1 || { echo "Error: the program '$tool' is missing" >&2; exit 2; }
done

state="$root/.kivi-otrs"
manifest="$state/manifest"
marker='kivi_otrs/order_button.html'

# Our files: source in this directory -> target in the kivitendo tree.
copies='SL/Controller/KiviOtrs.pm
public/js/kivi.KiviOtrs.js
templates/design40_webpages/kivi_otrs/order_button.html'

above='templates/design40_webpages/order/tabs/_item_input.html'
below='templates/design40_webpages/order/tabs/_item_below_input.html'
above_anchor='kivi.Order.open_multi_items_dialog()'
below_anchor='kivi.Order.add_item()'
above_line="  [% PROCESS $marker KIVI_OTRS_LAYOUT='above' %][%# kivi-otrs: sh install.sh --uninstall removes this line %]"
below_line="  [% PROCESS $marker KIVI_OTRS_LAYOUT='below' %][%# kivi-otrs: sh install.sh --uninstall removes this line %]"

say()  { printf '%s\n' "$*"; }
fail() { printf 'Error: %s\n' "$*" >&2; exit 1; }
why=$(mktemp) && trap 'rm -f "$why"' EXIT
sha()  { if [ -f "$1" ]; then sha256sum < "$1" | awk '{print $1}'; else echo -; fi; }

# --- the tree must be kivitendo 4.1 or newer -------------------------------------------
check_tree() {
  [ -f "$root/SL/Controller/Order.pm" ] && [ -f "$root/VERSION" ] ||
    fail "$root is not a kivitendo tree (no SL/Controller/Order.pm or VERSION); nothing was changed"
  version=$(head -n 1 "$root/VERSION" | tr -d '\r')
  major=$(printf '%s' "$version" | sed -n 's/^\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1/p')
  minor=$(printf '%s' "$version" | sed -n 's/^\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\2/p')
  if [ -z "$major" ] || [ "$major" -lt 4 ] || { [ "$major" -eq 4 ] && [ "$minor" -lt 1 ]; }; then
    fail "kivitendo $version found in $root; kivi-otrs needs kivitendo 4.1 or newer (update kivitendo first); nothing was changed"
  fi
  [ -f "$root/public/js/kivi.Order.js" ] ||
    fail "kivitendo $version without public/js/kivi.Order.js; nothing was changed"
  grep -q 'add_multi_items' "$root/public/js/kivi.Order.js" ||
    fail "public/js/kivi.Order.js has no add_multi_items (the button inserts positions with it); nothing was changed"
  say "kivitendo $version in $root"
}

# Manifest lines: <path> <sha256 before install or -> <sha256 after install>
recorded() { [ -f "$manifest" ] && awk -v p="$1" -v f="$2" '$1 == p { print $f }' "$manifest" || true; }

record() {  # record PATH ORIG_SHA INSTALLED_SHA
  tmp="$state/manifest.new"
  { [ -f "$manifest" ] && awk -v p="$1" '$1 != p' "$manifest"; printf '%s %s %s\n' "$1" "$2" "$3"; } > "$tmp"
  mv "$tmp" "$manifest"
}

backup() {  # keep the current file as the original, unless we changed it ourselves
  if [ -f "$root/$1" ]; then
    mkdir -p "$state/orig/$(dirname "$1")"
    cat "$root/$1" > "$state/orig/$1"
  fi
  record "$1" "$(sha "$root/$1")" -
}

# Where the line goes: prints the line number to insert after, or a reason on stderr.
insert_after() {  # insert_after FILE ANCHOR KIND(above|below)
  count=$(grep -cF -- "$2" "$1" || true)
  if [ "$count" != 1 ]; then
    echo "the anchor '$2' occurs $count times in $(basename "$1") (expected once)" >&2
    return 1
  fi
  if [ "$3" = above ]; then
    grep -nF -- "$2" "$1" | head -n 1 | cut -d: -f1
  else
    awk -v a="$2" 'found && $0 ~ /^[ \t]*<\/tr>[ \t]*$/ { print NR; exit } index($0, a) { found = 1 }' "$1" | grep . ||
      { echo "no line '</tr>' after the anchor '$2' in $(basename "$1")" >&2; return 1; }
  fi
}

# --- check: what would install do? -----------------------------------------------------
plan() {
  problems=0
  for path in $copies; do
    if [ "$(sha "$root/$path")" = "$(sha "$here/$path")" ]; then
      say "  $path: up to date"
    elif [ -f "$root/$path" ]; then
      say "  $path: would be replaced by this version"
    else
      say "  $path: would be copied"
    fi
  done
  for pair in "above:$above" "below:$below"; do
    kind=${pair%%:*}; path=${pair#*:}
    if [ ! -f "$root/$path" ]; then
      say "  $path: MISSING in this kivitendo"; problems=1; continue
    fi
    if grep -qF -- "$marker" "$root/$path"; then
      say "  $path: button line already present"
      continue
    fi
    eval "anchor=\$${kind}_anchor"
    if line=$(insert_after "$root/$path" "$anchor" "$kind" 2>"$why"); then
      say "  $path: would insert one line after line $line"
    else
      say "  $path: CANNOT insert: $(cat "$why")"; problems=1
    fi
  done
  return $problems
}

do_install() {
  mkdir -p "$state"
  for path in $copies; do
    [ "$(sha "$root/$path")" = "$(sha "$here/$path")" ] && continue
    [ -n "$(recorded "$path" 2)" ] || backup "$path"
    mkdir -p "$root/$(dirname "$path")"
    install -m 0644 "$here/$path" "$root/$path"
    record "$path" "$(recorded "$path" 2)" "$(sha "$root/$path")"
    say "  copied $path"
  done
  for pair in "above:$above" "below:$below"; do
    kind=${pair%%:*}; path=${pair#*:}
    grep -qF -- "$marker" "$root/$path" && continue
    eval "anchor=\$${kind}_anchor"
    eval "text=\$${kind}_line"
    line=$(insert_after "$root/$path" "$anchor" "$kind")
    backup "$path"   # a template without our line is kivitendo's (perhaps updated) original
    awk -v n="$line" -v t="$text" '{ print } NR == n { print t }' "$state/orig/$path" > "$state/edit.tmp"
    cat "$state/edit.tmp" > "$root/$path"   # same inode: owner and mode stay
    rm -f "$state/edit.tmp"
    record "$path" "$(recorded "$path" 2)" "$(sha "$root/$path")"
    say "  $path: inserted the button line after line $line"
  done
}

do_uninstall() {
  [ -f "$manifest" ] || { say "Nothing to uninstall: $state/manifest not found."; return 0; }
  left=0
  while read -r path orig installed; do
    now=$(sha "$root/$path")
    if [ "$now" = "$installed" ]; then
      if [ "$orig" = - ]; then
        rm -f "$root/$path"
        say "  removed $path"
      else
        [ "$(sha "$state/orig/$path")" = "$orig" ] || { say "  $path: backup damaged (sha256 differs), left alone"; left=1; continue; }
        cat "$state/orig/$path" > "$root/$path"
        say "  restored $path"
      fi
    elif [ "$now" = "$orig" ]; then
      say "  $path: already original"
    elif [ "$orig" != - ] && grep -qF -- "$marker" "$root/$path" 2>/dev/null; then
      grep -vF -- "$marker" "$root/$path" > "$state/edit.tmp" || true
      cat "$state/edit.tmp" > "$root/$path"
      rm -f "$state/edit.tmp"
      say "  $path: changed since install; removed only the button line"
    elif [ "$orig" != - ]; then
      say "  $path: changed since install and has no button line (kivitendo update?), left alone"
    else
      say "  $path: changed since install, left alone: delete it by hand"; left=1
    fi
  done < "$manifest"
  # remove directories we created and that are now empty
  rmdir "$root/templates/design40_webpages/kivi_otrs" 2>/dev/null || true
  if [ $left = 0 ]; then
    rm -rf "$state"
  else
    say "Kept $state (backups and manifest) because of the files above."
  fi
  return $left
}

check_tree
case "$mode" in
  check)
    if plan; then say "Check passed: install would work."; exit 0; fi
    say "Check FAILED: install would change nothing; see kivitendo/README.md, 'When install.sh refuses'."
    exit 1
    ;;
  install)
    plan > "$why.plan" || { cat "$why.plan" >&2; rm -f "$why.plan"; fail "install refused; nothing was changed"; }
    rm -f "$why.plan"
    do_install
    say "Installed. Add the [kivi_otrs] section to config/kivitendo.conf and restart the web server."
    ;;
  uninstall)
    do_uninstall
    say "Removed. Remove the [kivi_otrs] section from config/kivitendo.conf and restart the web server."
    ;;
esac
