# Shared steps of the Debian chroot set-ups (gimp_setup.sh, krita6_setup.sh); source it, needs root.

# The host's apt mirror (deb822 first, then the one-line format): in CI sandboxes it is the only
# network there is.
host_mirror() {
  local m
  m="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$m" ] || m="$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

# debootstrap ROOT SUITE MIRROR: a minbase tree, unless ROOT already has apt. Other host set-ups may
# hold the dpkg lock at the same time: wait for it instead of failing.
bootstrap() {
  local root="$1" suite="$2" mirror="$3" keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  if ! command -v debootstrap >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap
  fi
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    # A half-finished debootstrap leaves a tree that a second one refuses: start clean.
    # --one-file-system: never follow a (stale) bind mount into the host.
    [ -d "$root" ] && rm -rf --one-file-system "$root"
    mkdir -p "$root"
    [ -f "$keyring" ] || keyring=  # non-Debian hosts: install debian-archive-keyring
    debootstrap --variant=minbase ${keyring:+--keyring="$keyring"} "$suite" "$root" "$mirror"
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}
