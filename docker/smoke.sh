#!/usr/bin/env bash
# Smoke test of a medi2i image: the CLI answers, the demo runs and writes its output,
# and the DICOM node receives a generated CT series, translates it and stores the
# derived series. Usage: docker/smoke.sh [IMAGE]   (default medi2i:cpu)
set -euo pipefail
image="${1:-medi2i:cpu}"
work="$(mktemp -d)"
chmod 777 "$work"
node="medi2i-smoke-$$"
cleanup() {
  docker rm -f "$node" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "1/3 the command line"
docker run --rm "$image" --version
docker run --rm "$image" methods >/dev/null

echo "2/3 the demo"
docker run --rm -v "$work:/data" "$image" demo --output /data/demo --no-progress
test -n "$(find "$work/demo" -name '*.nii.gz' -newer "$0" -print -quit)"

echo "3/3 the DICOM node"
docker run --rm -v "$work:/data" --entrypoint python "$image" -c '
import numpy as np
from medi2i.testing.dicom_series import write_series
ct = np.full((48, 48, 12), -1000.0)
ct[8:40, 8:40, :] = 40.0
write_series("/data/series", ct, spacing=(1.0, 1.0, 2.5))
'
docker run -d --name "$node" -v "$work:/data" "$image" dicom serve \
  --method intensity-inversion --host 0.0.0.0 --output /data/node --idle-timeout 2 >/dev/null
sleep 5
docker run --rm --network "container:$node" -v "$work:/data" "$image" \
  dicom send /data/series 127.0.0.1:11112:MEDI2I
for _ in $(seq 60); do
  if [ -n "$(find "$work/node" -name '*.dcm' -print -quit 2>/dev/null)" ]; then
    echo "the node stored $(find "$work/node" -name '*.dcm' | wc -l) derived instances"
    exit 0
  fi
  sleep 1
done
docker logs "$node"
echo "the node stored nothing in 60 s" >&2
exit 1
