#!/usr/bin/env python3
"""Write tests/data/split/tiny-qwen3-0000N-of-00003.gguf: tests/data/tiny-qwen3.gguf cut into
three parts in llama.cpp's split format, by the reference writer (the `gguf` package's
GGUFWriter with split_max_tensors, the code path of `convert_hf_to_gguf.py --split-max-tensors`).

    python3 scripts/gen_split_gguf.py [--src tests/data/tiny-qwen3.gguf] [--out-dir tests/data/split]

The first part holds every metadata key plus `split.no`, `split.count`, `split.tensors.count`;
the others hold only the `split.*` keys and their tensors. The hub tests serve these parts as a
multi-part GGUF and check that the joined file has the original's metadata and tensors and
that the engine loads it. Tested with gguf 0.19.
"""
import argparse
import os

import gguf

SPLIT_MAX_TENSORS = 13  # 36 tensors -> 3 parts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="tests/data/tiny-qwen3.gguf")
    ap.add_argument("--out-dir", default="tests/data/split")
    a = ap.parse_args()
    r = gguf.GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    os.makedirs(a.out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(a.src))[0]
    # GGUFWriter names the parts PATH-0000N-of-0000M.gguf from PATH minus ".gguf".
    w = gguf.GGUFWriter(os.path.join(a.out_dir, stem + ".gguf"), arch, split_max_tensors=SPLIT_MAX_TENSORS)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for t in r.tensors:
        # The reader hands quantized tensors out as rows of raw bytes; raw_dtype keeps the type.
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
