"""The plain-language notes of a court bundle, in English and Chinese, with the commands
that check it using ``openssl`` and coreutils alone.

Why the commands are written out in full rather than pointing at our tools: a court's
expert must not have to trust our code. They are derived from ``docs/journal-format.md``
section 8 (the same ``sed`` cuts, the same DER prefix), and ``tests/test_archive_bundle.py``
runs them, as printed in the note, on a built bundle and on altered ones. Both notes carry
the identical command block between the marker lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evidence.unitkey import show_fingerprint
from evidence.verify_bundle import DOCK_RECORDS_NAME, FINGERPRINT_NAME, MANIFEST_NAME

EN_NAME = "README.en.txt"
ZH_NAME = "README.zh-CN.txt"
BEGIN = "----- BEGIN COMMANDS -----"
END = "----- END COMMANDS -----"

# Runs in the bundle folder, with FP set to the unit key's fingerprint (64 hex digits) as
# the head of unit gave it. {excused} is filled with the withheld files' bundle paths.
_COMMANDS = r"""export LC_ALL=C
: "${FP:?set FP to the unit key fingerprint you were given (64 hex digits, no spaces)}"
FP=$(printf '%s' "$FP" | tr -d ' ' | tr A-F a-f)
W=$(mktemp -d)   # scratch folder: nothing is written into the bundle
FAIL=0
WITHHELD='{excused}'
edverify() {  # KEY_HEX MESSAGE_FILE SIG_HEX
  printf '302a300506032b6570032100%s' "$1" | tr a-f A-F | basenc --base16 -d > "$W/k.der"
  openssl pkey -pubin -inform DER -in "$W/k.der" -out "$W/k.pem" < /dev/null || return 1
  printf '%s' "$3" | tr a-f A-F | basenc --base16 -d > "$W/s.bin"
  openssl pkeyutl -verify -pubin -inkey "$W/k.pem" -rawin -in "$2" -sigfile "$W/s.bin" < /dev/null > /dev/null 2>&1
}
# 1. The registry: signed by the unit key whose fingerprint is FP.
tr -d '\n' < registry.json > "$W/reg.bin"
UNIT_KEY=$(sed -E 's/.*"unit_key":"([0-9a-f]{64})"}$/\1/' "$W/reg.bin")
SIG=$(sed -E 's/.*"sig":"([0-9a-f]{128})","unit":"[^"]*","unit_key":"[0-9a-f]{64}"}$/\1/' "$W/reg.bin")
sed -E 's/"sig":"[0-9a-f]{128}",("unit":"[^"]*","unit_key":"[0-9a-f]{64}"})$/\1/' "$W/reg.bin" > "$W/regmsg.bin"
if edverify "$UNIT_KEY" "$W/regmsg.bin" "$SIG"; then echo "registry.json: signature OK"; else echo "registry.json: SIGNATURE FAILED"; FAIL=1; fi
GOT=$(printf '%s' "$UNIT_KEY" | tr a-f A-F | basenc --base16 -d | openssl dgst -sha256 -r | cut -c1-64)
if [ "$GOT" = "$FP" ]; then echo "registry.json: signed by unit key $GOT: OK"; else echo "registry.json: SIGNED BY UNIT KEY $GOT, NOT $FP"; FAIL=1; fi
# 2. Every dock record: signed by its dock's key from the registry.
N=0
while IFS= read -r LINE; do
  N=$((N + 1))
  printf '%s' "$LINE" > "$W/line.bin"
  DOCK=$(sed -E 's/.*\},"device":"([^"]*)","kind":.*/\1/' "$W/line.bin")
  DOCK_KEY=$(sed -E 's/.*"docks":\{.*"'"$DOCK"'":\{"public_key":"([0-9a-f]{64})".*/\1/' "$W/reg.bin")
  SIG=$(sed -E 's/.*"sig":"([0-9a-f]{128})","utc":"[^"]*","v":[0-9]+}$/\1/' "$W/line.bin")
  sed -E 's/"sig":"[0-9a-f]{128}",("utc":"[^"]*","v":[0-9]+})$/\1/' "$W/line.bin" > "$W/msg.bin"
  edverify "$DOCK_KEY" "$W/msg.bin" "$SIG" || { echo "{dock_records}:$N: SIGNATURE FAILED (dock $DOCK)"; FAIL=1; }
done < {dock_records}
# 3. Each piece of a camera's journal: every record signed by the camera's key, seq
#    without gaps, each prev the hash of the line before, up to a head the dock signed;
#    then every media file its records bind.
for J in devices/*/journal-*.jsonl; do
  DEVICE=$(basename "$(dirname "$J")")
  RANGE=${J##*journal-}; RANGE=${RANGE%.jsonl}; FIRST=${RANGE%-*}; LAST=${RANGE#*-}
  KEY=$(sed -E 's/.*"devices":\{.*"'"$DEVICE"'":\{"officer":"[^"]*","public_key":"([0-9a-f]{64})".*/\1/' "$W/reg.bin")
  PREV=""; SEQ_BEFORE=""; N=0
  while IFS= read -r LINE; do
    N=$((N + 1))
    printf '%s' "$LINE" > "$W/line.bin"
    SIG=$(sed -E 's/.*"sig":"([0-9a-f]{128})","utc":"[^"]*","v":[0-9]+}$/\1/' "$W/line.bin")
    sed -E 's/"sig":"[0-9a-f]{128}",("utc":"[^"]*","v":[0-9]+})$/\1/' "$W/line.bin" > "$W/msg.bin"
    edverify "$KEY" "$W/msg.bin" "$SIG" || { echo "$J:$N: SIGNATURE FAILED"; FAIL=1; }
    SEQ=$(sed -E 's/.*,"seq":([0-9]+),"sig":.*/\1/' "$W/line.bin")
    P=$(sed -E 's/.*"prev":"([0-9a-f]{64})","seq":.*/\1/' "$W/line.bin")
    if [ -z "$SEQ_BEFORE" ]; then
      [ "$SEQ" = "$FIRST" ] || { echo "$J:$N: STARTS AT SEQ $SEQ, NOT $FIRST"; FAIL=1; }
    else
      [ "$SEQ" = "$((SEQ_BEFORE + 1))" ] || { echo "$J:$N: SEQ $SEQ AFTER $SEQ_BEFORE: RECORDS MISSING"; FAIL=1; }
      [ "$P" = "$PREV" ] || { echo "$J:$N: CHAIN BROKEN (prev is not the hash of line $((N - 1)))"; FAIL=1; }
    fi
    SEQ_BEFORE=$SEQ
    PREV=$(openssl dgst -sha256 -r "$W/line.bin" | cut -c1-64)
  done < "$J"
  [ -n "$SEQ_BEFORE" ] && [ "$SEQ_BEFORE" -ge "$LAST" ] || { echo "$J: ENDS BEFORE SEQ $LAST"; FAIL=1; }
  grep -F '"kind":"records_stored"' {dock_records} | grep -F '"device":"'"$DEVICE"'"' \
    | grep -F '"upto_seq":'"$SEQ_BEFORE"'}' | head -n 1 > "$W/head.txt"
  if [ -s "$W/head.txt" ] && grep -qF '"upto_hash":"'"$PREV"'"' "$W/head.txt"; then
    echo "$J: seq $FIRST..$SEQ_BEFORE, $N records, chained up to the head the dock stored: OK"
  else
    echo "$J: NO DOCK HEAD FOR SEQ $SEQ_BEFORE WITH HASH $PREV"; FAIL=1
  fi
  grep -E '"kind":"(segment|photo)"' "$J" > "$W/media.txt" || true
  while IFS= read -r LINE; do
    FILE=$(printf '%s' "$LINE" | sed -E 's/^\{"body":\{.*"file":"([^"]*)".*/\1/')
    SIZE=$(printf '%s' "$LINE" | sed -E 's/^\{"body":\{.*"size":([0-9]+).*/\1/')
    DIGEST=$(printf '%s' "$LINE" | sed -E 's/^\{"body":\{.*"sha256":"([0-9a-f]{64})".*/\1/')
    SEQ=$(printf '%s' "$LINE" | sed -E 's/.*,"seq":([0-9]+),"sig":.*/\1/')
    F="devices/$DEVICE/$FILE"
    if [ -f "$F" ] && [ ! -L "$F" ]; then
      if [ "$(wc -c < "$F")" -eq "$SIZE" ] && [ "$(openssl dgst -sha256 -r "$F" | cut -c1-64)" = "$DIGEST" ]; then
        echo "$F OK"
      else
        echo "$F ALTERED"; FAIL=1
      fi
    elif [ "$SEQ" -gt "$LAST" ]; then
      echo "$F after the exported range (seq $SEQ > $LAST): not exported"
    elif printf '%s\n' "$WITHHELD" | grep -qxF "$F"; then
      echo "$F withheld (listed in this note)"
    else
      echo "$F MISSING"; FAIL=1
    fi
  done < "$W/media.txt"
done
if [ "$FAIL" = 0 ]; then echo "BUNDLE CHECKED: OK"; else echo "BUNDLE CHECK FAILED"; fi"""


def commands(manifest: dict[str, Any]) -> str:
    """The command block for this bundle (its withheld files filled in)."""
    excused = "\n".join(m["file"] for m in manifest["media"] if m["status"] == "omitted")
    return _COMMANDS.replace("{excused}", excused).replace("{dock_records}", DOCK_RECORDS_NAME)


def _ranges_text(manifest: dict[str, Any], zh: bool) -> str:
    lines = []
    for r in manifest["ranges"]:
        count = sum(
            1
            for m in manifest["media"]
            if m["device"] == r["device"] and r["first_seq"] <= m["seq"] <= r["last_seq"]
        )
        if zh:
            lines.append(
                f"  - 设备 {r['device']}（{r['unit']}）：记录 {r['first_seq']} 至 "
                f"{r['last_seq']}，含 {count} 个媒体文件；日志文件 {r['journal']}"
            )
        else:
            lines.append(
                f"  - device {r['device']} ({r['unit']}): records {r['first_seq']} to "
                f"{r['last_seq']}, {count} media file(s); journal {r['journal']}"
            )
    return "\n".join(lines)


def _omitted_text(manifest: dict[str, Any], zh: bool) -> str:
    omitted = [m for m in manifest["media"] if m["status"] == "omitted"]
    if not omitted:
        return "  （无）" if zh else "  (none)"
    if zh:
        return "\n".join(
            f"  - {m['file']}（设备 {m['device']} 记录 {m['seq']}，SHA-256 {m['sha256']}）："
            f"{m['reason']}"
            for m in omitted
        )
    return "\n".join(
        f"  - {m['file']} (device {m['device']}, record {m['seq']}, SHA-256 "
        f"{m['sha256']}): {m['reason']}"
        for m in omitted
    )


_EN = """\
COURT BUNDLE: HOW TO CHECK IT
{title_line}
This folder holds original body-camera recordings, copied byte for byte from the unit's
evidence store, with what is needed to check them without trusting the software that
made them. Checking needs only a shell, GNU coreutils and sed, and OpenSSL 3.0 or later.

What is in it
  - devices/<camera>/journal-<first>-<last>.jsonl: the camera's own journal records for
    each exported range, unchanged. Each line is one record, signed by the camera's key;
    each record names the hash of the one before it, so no record can be removed, added
    or reordered without breaking the chain. Segment and photo records give each media
    file's size and SHA-256. A journal piece may run a few records past the range, up to
    the point the dock confirmed storing; media after the range are not exported.
  - devices/<camera>/media/...: the original video segments (MPEG-TS, H.264 + AAC) and
    photos.
  - {dock_records}: the docking station's own signed records saying it stored these
    files and this chain (signed with the dock's key).
  - registry.json: the unit-signed list of camera and dock keys.
  - {fingerprint}: the unit key's fingerprint. Do not rely on this copy: compare it with
    the fingerprint the head of unit gives you (on paper, read aloud).
  - {manifest}: the list of what was exported and withheld; bodycam-verify reads it.

Exported ranges
{ranges}

Withheld as confidential (left out on the decision of the head of unit)
{omitted}

Unit key fingerprint recorded at export: {fp_grouped}

How to check, with openssl alone
Open a shell in this folder, set FP to the unit key fingerprint you were given, and run
the commands between the marker lines (for example: copy them into check.sh and run
"FP=<fingerprint> bash check.sh"). Every line must end in OK, or say that a file was
withheld or lies after the range; the last line must be "BUNDLE CHECKED: OK". Any line in
capitals names what failed. The same checks are explained one by one in the project's
docs/journal-format.md, section 8; "bodycam-verify --unit-key <fingerprint> <this folder>"
runs them, and more, in one command.

{begin}
{commands}
{end}
"""

_ZH = """\
法庭证据包：如何核验
{title_line}
本文件夹存放执法记录仪的原始录像，从本单位证据存储中逐字节复制而来，并附有核验所需的全部材料，
核验时无需信任生成它的软件。只需要一个命令行（shell）、GNU coreutils 和 sed，以及 OpenSSL 3.0
或更高版本。

包含内容
  - devices/<记录仪>/journal-<起>-<止>.jsonl：每个导出范围内记录仪自身的日志记录，未作任何改动。
    每行一条记录，由记录仪的密钥签名；每条记录都写明前一条记录的哈希值，因此删除、增加或调换
    任何记录都会使链条断开。录像段和照片记录写明每个媒体文件的大小和 SHA-256。日志片段可能比
    导出范围多出几条记录，直到底座确认存储的位置为止；范围之后的媒体文件不导出。
  - devices/<记录仪>/media/...：原始录像段（MPEG-TS，H.264 + AAC）和照片。
  - {dock_records}：采集底座自己的签名记录，说明它存储了这些文件和这条链（用底座的密钥签名）。
  - registry.json：由单位密钥签名的记录仪和底座密钥清单。
  - {fingerprint}：单位密钥的指纹。请勿依赖此副本：应与单位负责人提供的指纹（书面或口头）核对。
  - {manifest}：已导出和未导出内容的清单；bodycam-verify 读取此文件。

导出范围
{ranges}

因保密而未提供（经单位负责人决定）
{omitted}

导出时记录的单位密钥指纹：{fp_grouped}

如何仅用 openssl 核验
在本文件夹中打开命令行，把 FP 设为您得到的单位密钥指纹，然后运行两条标记行之间的命令（例如：
把它们复制到 check.sh，运行 "FP=<指纹> bash check.sh"）。每一行都必须以 OK 结尾，或说明某文件
未提供或位于范围之后；最后一行必须是 "BUNDLE CHECKED: OK"。任何大写字母的行指出了哪一项未通过。
同样的检查在本项目文档 docs/journal-format.md 第 8 节逐项说明；
"bodycam-verify --unit-key <指纹> <本文件夹>" 用一条命令完成这些检查及更多检查。

{begin}
{commands}
{end}
"""


def write_notes(folder: Path, manifest: dict[str, Any]) -> None:
    """Write both notes into the bundle being built (durably: fsynced)."""
    fp = manifest["unit_key_fingerprint"]
    title = manifest.get("title") or ""
    for name, template, zh in ((EN_NAME, _EN, False), (ZH_NAME, _ZH, True)):
        title_line = (f"案件：{title}\n" if zh else f"Case: {title}\n") if title else ""
        text = template.format(
            title_line=title_line,
            dock_records=DOCK_RECORDS_NAME,
            fingerprint=FINGERPRINT_NAME,
            manifest=MANIFEST_NAME,
            ranges=_ranges_text(manifest, zh),
            omitted=_omitted_text(manifest, zh),
            fp_grouped=show_fingerprint(fp),
            begin=BEGIN,
            commands=commands(manifest),
            end=END,
        )
        path = folder / name
        with open(path, "xb", buffering=0) as f:
            f.write(text.encode("utf-8"))
            os.fsync(f.fileno())


def command_block(note: str) -> str:
    """The commands of a note, as a reader would copy them."""
    return note[note.index(BEGIN) + len(BEGIN) : note.index(END)].strip("\n") + "\n"
