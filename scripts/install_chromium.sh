#!/usr/bin/env bash
# Installs Debian's chromium (and a font with Chinese characters, for the draw page) for the
# browser tests (tests/browser); `make install` calls it when /usr/bin/chromium is missing.
# Without apt or root rights it explains and succeeds: the browser tests then skip with that
# reason; everything else works.
set -u
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: apt-get not found; the browser tests will be skipped (install chromium at /usr/bin/chromium to run them)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "chromium: not root and no password-less sudo; the browser tests will be skipped (run: sudo apt-get install chromium)"
        exit 0
    fi
fi
echo "chromium: installing Debian's chromium with apt (for the browser tests)"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core fonts-wqy-zenhei >/dev/null; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)"
else
    echo "chromium: apt-get install failed; the browser tests will be skipped"
fi
exit 0
