#!/usr/bin/env bash
# Lays out the part of the CUDA 13.0 toolkit that `cargo build --features cuda` needs (nvcc and its compilers,
# headers, and the libraries candle links: cudart, cuBLAS, cuBLASLt, cuRAND, NVRTC), from NVIDIA's wheels on
# the Python package index, so a machine with no CUDA install (CI, this project's build hosts) can build the
# CUDA binary. Wheels are pinned by version and sha256 and cached outside git.
#
#   scripts/cuda-toolkit.sh        # prints the directory, to use as CUDA_HOME
#
# Into $SILICA_CUDA_DIR (default ~/.cache/silica/cuda-13.0): bin/ include/ nvvm/ lib64/, and lib64/stubs/ with
# a libcuda.so stub. The driver library, libcuda, ships with the NVIDIA driver, not the toolkit: the stub is
# built from cuda.h's declarations so the binary links; each of its functions returns CUDA_ERROR_NO_DEVICE
# (100). At run time the real driver's libcuda.so.1 is used (the stub must never be on LD_LIBRARY_PATH there).
#
# 13.0, not newer: a driver runs PTX of its own CUDA version or older, and driver 580 (CUDA 13.0) is what the
# GPU machines this was written for have.
set -euo pipefail

dir="${SILICA_CUDA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silica/cuda-13.0}"
if [[ -x "$dir/bin/nvcc" && -f "$dir/lib64/stubs/libcuda.so.1" && -f "$dir/.complete" ]]; then
    echo "$dir"
    exit 0
fi

# name==version sha256
wheels=(
    "nvidia-cuda-nvcc==13.0.88 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
    "nvidia-cuda-crt==13.0.88 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
    "nvidia-nvvm==13.0.88 c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
    "nvidia-cuda-cccl==13.0.85 e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
    "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
    "nvidia-cuda-nvrtc==13.0.88 ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
    "nvidia-cublas==13.0.2.14 0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c"
    "nvidia-curand==10.4.0.35 1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"
)

pip_cmd() {
    if command -v pip3 >/dev/null; then echo pip3; elif command -v pip >/dev/null; then echo pip;
    else echo "python3 -m pip"; fi
}
for tool in gcc python3; do
    command -v "$tool" >/dev/null || { echo "cuda-toolkit.sh: needs $tool" >&2; exit 1; }
done

whl="$dir.wheels"
mkdir -p "$whl"
for w in "${wheels[@]}"; do
    spec="${w% *}" sha="${w#* }"
    name="${spec%==*}" version="${spec#*==}"
    file="$(ls "$whl"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -1 || true)"
    if [[ -z "$file" ]]; then
        echo "cuda-toolkit.sh: downloading $spec" >&2
        $(pip_cmd) download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
            --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 -d "$whl" "$spec"
        file="$(ls "$whl"/"${name//-/_}"-"$version"-*.whl | head -1)"
    fi
    got="$(sha256sum "$file" | cut -d' ' -f1)"
    if [[ "$got" != "$sha" ]]; then
        echo "cuda-toolkit.sh: $file has sha256 $got, expected $sha; delete it and run again" >&2
        exit 1
    fi
done

rm -rf "$dir"
mkdir -p "$dir/x"
for file in "$whl"/*.whl; do
    python3 - "$file" "$dir/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2])
PY
done
cu="$dir/x/nvidia/cu13"
chmod +x "$cu"/bin/* "$cu"/nvvm/bin/*
ln -s x/nvidia/cu13/bin "$dir/bin"
ln -s x/nvidia/cu13/include "$dir/include"
ln -s x/nvidia/cu13/nvvm "$dir/nvvm"
mkdir -p "$dir/lib64/stubs"
for f in "$cu"/lib/*; do ln -s "$f" "$dir/lib64/"; done
for lib in cudart cublas cublasLt curand nvrtc; do
    so="$(cd "$dir/lib64" && ls lib$lib.so.* | head -1)"
    ln -s "$so" "$dir/lib64/lib$lib.so"
done

# The libcuda stub: every cu* function cuda.h declares (after its _v2... renaming macros), returning 100.
src="$dir/lib64/stubs/cuda-stub.c"
echo '#include <cuda.h>' | gcc -E -I "$dir/include" -x c - |
    grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u |
    sed 's/.*/int &(void) { return 100; }/' >"$src"
[[ "$(wc -l <"$src")" -gt 300 ]] || { echo "cuda-toolkit.sh: cuda.h gave too few functions" >&2; exit 1; }
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$dir/lib64/stubs/libcuda.so" "$src"
ln -s libcuda.so "$dir/lib64/stubs/libcuda.so.1"
"$dir/bin/nvcc" --version | tail -1 >&2
touch "$dir/.complete"
echo "$dir"
