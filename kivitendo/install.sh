#!/bin/sh
# Install (or remove) the kivi-otrs order-screen button into a kivitendo checkout.
#
#   sh install.sh /var/www/kivitendo-erp            # install
#   sh install.sh --uninstall /var/www/kivitendo-erp
#   sh install.sh --check /var/www/kivitendo-erp    # only test whether the patch applies
#
# Copies SL/Controller/KiviOtrs.pm and js/kivi.KiviOtrs.js, then applies
# patches/order-screen-button.patch with "patch -p1" after a "--dry-run".
# Nothing is changed when the dry run fails. Restart the web server (or
# kivitendo's FastCGI processes) afterwards.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
patch_file="$here/patches/order-screen-button.patch"
mode=install

case "${1:-}" in
  --uninstall) mode=uninstall; shift ;;
  --check)     mode=check;     shift ;;
  -h|--help)   sed -n '2,11p' "$0"; exit 0 ;;
esac

root=${1:-}
if [ -z "$root" ] || [ ! -f "$root/SL/Controller/Order.pm" ] || [ ! -f "$root/js/kivi.Order.js" ]; then
  echo "Error: give the kivitendo root directory (the one with SL/Controller/Order.pm and js/kivi.Order.js)" >&2
  exit 2
fi
command -v patch >/dev/null 2>&1 || { echo "Error: the 'patch' program is missing (apt-get install patch)" >&2; exit 2; }

cd "$root"

case "$mode" in
  check)
    patch -p1 --dry-run --forward < "$patch_file"
    ;;

  install)
    if patch -p1 -R --dry-run --force < "$patch_file" >/dev/null 2>&1; then
      echo "Template patch already applied; copying files only."
    else
      if ! patch -p1 --dry-run --forward < "$patch_file"; then
        echo "Error: the template patch does not apply to this kivitendo version; nothing was changed." >&2
        echo "See README.md (section 'When the patch does not apply') for the manual edit." >&2
        exit 1
      fi
      patch -p1 --forward --no-backup-if-mismatch < "$patch_file"
    fi
    install -m 0644 "$here/SL/Controller/KiviOtrs.pm" SL/Controller/KiviOtrs.pm
    install -m 0644 "$here/js/kivi.KiviOtrs.js" js/kivi.KiviOtrs.js
    echo "Installed. Add the [kivi_otrs] section to config/kivitendo.conf and restart the web server."
    ;;

  uninstall)
    if patch -p1 -R --dry-run --force < "$patch_file" >/dev/null 2>&1; then
      patch -p1 -R --force --no-backup-if-mismatch < "$patch_file"
    else
      echo "Template patch not applied (or templates changed since); leaving the templates alone."
    fi
    rm -f SL/Controller/KiviOtrs.pm js/kivi.KiviOtrs.js
    echo "Removed. Remove the [kivi_otrs] section from config/kivitendo.conf and restart the web server."
    ;;
esac
