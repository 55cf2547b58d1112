# Shared by the resumable study queues (benchmarks/accuracy/run.sh, benchmarks/prototypes/run.sh):
# sourced, not run. Expects ROOT (the CIFAR-10 JPEG tree) and RESULTS (where results go).

log() { echo "[$(date '+%F %T')] $*"; }

# require_cifar: stop with the fix when the CIFAR-10 JPEG tree is not at $ROOT.
require_cifar() {
  if [ ! -d "$ROOT/train" ]; then
    echo "CIFAR-10 JPEG tree not found at $ROOT (expected $ROOT/train and $ROOT/val)." >&2
    echo "Fix: tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/data, or set CIFAR_ROOT." >&2
    exit 2
  fi
}

# copy_results RUN: the run's small files (config, metrics, tau2 statistics, eval/*.json,
# figures; no checkpoints or arrays) into $RESULTS/<name>, atomically (a temp dir, then mv),
# so a stopped queue never leaves a half-copied result behind.
copy_results() {
  local run="$1" name dest tmp
  name="$(basename "$run")"
  dest="$RESULTS/$name"
  tmp="$RESULTS/.tmp-$name"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$run/config.yaml" "$tmp/"
  for f in metrics.jsonl summary.json; do [ -f "$run/$f" ] && cp "$run/$f" "$tmp/"; done
  for d in eval tau2 figures; do [ -d "$run/$d" ] && cp -r "$run/$d" "$tmp/"; done
  find "$tmp" \( -name '*.pt' -o -name '*.npz' -o -name '*.npy' -o -path '*/cache/*' \) -delete
  find "$tmp" -type d -empty -delete
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# figures RUN: draw the run's figures unless figures/figures.json is newer than everything they
# are drawn from (eval/, tau2/, metrics.jsonl), so a queue that passes a finished run again does
# not redraw its t-SNE or rewrite the timestamps of results already copied.
figures() {
  local run="$1" manifest="$1/figures/figures.json" inputs=()
  for f in "$run/eval" "$run/tau2" "$run/metrics.jsonl"; do [ -e "$f" ] && inputs+=("$f"); done
  if [ -f "$manifest" ] && [ "${#inputs[@]}" -gt 0 ] \
      && [ -z "$(find "${inputs[@]}" -newer "$manifest" -print -quit)" ]; then
    return 0
  fi
  varcon figures "$run" > /dev/null
}
