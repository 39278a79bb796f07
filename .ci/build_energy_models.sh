#!/usr/bin/env bash
# hwcomponents-cacti and hwcomponents-neurosim ship CACTI and NeuroSim as prebuilt binaries linked against a newer
# glibc (2.38) than Debian 12's; both wheels also ship the C++ sources. Where a shipped binary does not run, this
# rebuilds it from those sources in place (g++ and make; about 20 s on 2 cores). Usage: PYTHON -> the energy venv's.
set -euo pipefail
py=${1:?usage: build_energy_models.sh PYTHON}
site=$("$py" -c 'import hwcomponents_cacti, os; print(os.path.dirname(os.path.dirname(hwcomponents_cacti.__file__)))')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cacti=$site/hwcomponents_cacti/cacti
if ldd "$cacti/cacti" 2>&1 | grep -q 'not found'; then
    cp -r "$cacti" "$tmp/cacti" && rm -rf "$tmp/cacti/obj_dbg" "$tmp/cacti/obj_opt" "$tmp/cacti/cacti"
    make -s -C "$tmp/cacti" -j2 opt >/dev/null 2>&1
    cp "$tmp/cacti/obj_opt/cacti" "$cacti/cacti"
    echo "rebuilt $cacti/cacti"
fi
ns=$site/hwcomponents_neurosim
if ldd "$ns/NeuroSim/main" 2>&1 | grep -q 'not found'; then
    cp -r "$ns/DNN_NeuroSim_V1.3/Inference_pytorch/NeuroSIM" "$tmp/ns" && cp "$ns"/drop_in/* "$tmp/ns/"
    rm -f "$tmp"/ns/*.o "$tmp/ns/main"
    make -s -C "$tmp/ns" -j2 >/dev/null 2>&1
    cp "$tmp/ns/main" "$ns/NeuroSim/main"
    echo "rebuilt $ns/NeuroSim/main"
fi
