#!/usr/bin/env bash
# Smoke test of a medi2i image: the CLI answers, the demo runs and writes its output,
# its model exports to ONNX and predicts from it, exports to a MONAI bundle that
# `python -m monai.bundle run` runs, and the DICOM node receives a generated CT series,
# translates it and stores the derived series. Usage: docker/smoke.sh [IMAGE]
# (default medi2i:cpu)
#
# The containers run as the calling user (--user), so everything they write in the
# work folder is that user's and the cleanup can remove it whatever the user's uid.
set -euo pipefail
image="${1:-medi2i:cpu}"
work="$(mktemp -d)"
node="medi2i-smoke-$$"
as_me=(--user "$(id -u):$(id -g)")
cleanup() {
  docker rm -f "$node" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# a path under $work as the containers see it (mounted at /data)
in_data() { echo "/data/${1#"$work/"}"; }

echo "1/5 the command line"
docker run --rm "${as_me[@]}" "$image" --version
docker run --rm "${as_me[@]}" "$image" methods >/dev/null

echo "2/5 the demo"
docker run --rm "${as_me[@]}" -v "$work:/data" "$image" demo --output /data/demo --no-progress
test -n "$(find "$work/demo" -name '*.nii.gz' -newer "$0" -print -quit)"

manifest="$(find "$work/demo" -name medi2i-model.json -print -quit)"
mr="$(find "$work/demo/data" -name mr.nii.gz -print -quit)"
test -n "$manifest" && test -n "$mr"
model="$(in_data "$(dirname "$manifest")")"
mr="$(in_data "$mr")"

echo "3/5 ONNX export and predict (the onnx extra)"
docker run --rm "${as_me[@]}" -v "$work:/data" "$image" \
  export "$model" /data/model.onnx --format onnx
docker run --rm "${as_me[@]}" -v "$work:/data" "$image" \
  predict "$mr" /data/onnx_sct.nii.gz --model /data/model.onnx --no-progress
test -s "$work/onnx_sct.nii.gz"

echo "4/5 MONAI bundle export and run (the bundle extra)"
docker run --rm "${as_me[@]}" -v "$work:/data" "$image" \
  export "$model" /data/bundle --format monai-bundle
docker run --rm "${as_me[@]}" -v "$work:/data" --entrypoint python "$image" \
  -m monai.bundle run --config_file /data/bundle/configs/inference.json \
  --meta_file /data/bundle/configs/metadata.json --bundle_root /data/bundle \
  --input_path "$mr" --output_path /data/bundle_sct.nii.gz
test -s "$work/bundle_sct.nii.gz"

echo "5/5 the DICOM node"
docker run --rm "${as_me[@]}" -v "$work:/data" --entrypoint python "$image" -c '
import numpy as np
from medi2i.testing.dicom_series import write_series
ct = np.full((48, 48, 12), -1000.0)
ct[8:40, 8:40, :] = 40.0
write_series("/data/series", ct, spacing=(1.0, 1.0, 2.5))
'
docker run -d --name "$node" "${as_me[@]}" -v "$work:/data" "$image" dicom serve \
  --method intensity-inversion --host 0.0.0.0 --output /data/node --idle-timeout 2 >/dev/null
sleep 5
docker run --rm "${as_me[@]}" --network "container:$node" -v "$work:/data" "$image" \
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
