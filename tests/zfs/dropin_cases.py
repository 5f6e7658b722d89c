"""The table of tests/zfs/test_dropin.py: each row runs once with zfs, once with encroot.

Tokens in ``setup``, ``args`` and ``after``: ``{p}`` is the row's own dataset
(``POOL/<row name>``, which a row's setup creates when it needs it), ``{pool}`` the pool,
``{keys}`` a key folder of that pool, ``{s}`` the folder of the streams
(made once per module by ``make_streams``).  ``stdin`` is ``stream:NAME``,
``text:LINES`` (``|`` separates lines) or "" for /dev/null.

A row with ``differs`` is a deliberate difference: encroot's own addition,
run with ``encroot_args``; the test checks encroot's result (``expect``:
dataset suffix -> properties, and ``after`` printing ``rc=0``) instead of
equality, and says so in the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

H1, H2, H3 = "11" * 32, "22" * 32, "33" * 32
P2 = "new passphrase"


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    command: str          # receive, recv or change-key
    args: tuple[str, ...]
    stdin: str = ""
    setup: str = ""
    after: str = ""
    differs: str = ""
    encroot_args: tuple[str, ...] = ()
    expect: dict[str, dict[str, str]] = field(default_factory=dict)


def rx(name: str, what: str, args: str, stdin: str = "full", setup: str = "",
       command: str = "receive") -> Case:
    return Case(name, what, command, tuple(args.split()),
                f"stream:{stdin}" if stdin else "", setup)


def ck(name: str, what: str, args: str, stdin: str = "", setup: str = "",
       after: str = "") -> Case:
    return Case(name, what, "change-key", tuple(args.split()),
                f"text:{stdin}" if stdin else "", setup, after)


MADE = "zfs create {p}"
FULL_T = "zfs receive {p} < {s}/full"
RAW_T = "zfs receive -u {p} < {s}/raw"
ROOT = f"echo {H1} | zfs create -o encryption=on -o keyformat=hex -o keylocation=prompt {{p}}"
FILE_ROOT = (f"printf %s {H1} > {{keys}}/{{name}}; zfs create -o encryption=on "
             "-o keyformat=hex -o keylocation=file://{keys}/{name} {p}")
CHILD = ROOT + "; zfs create {p}/c"
UNLOAD = "; zfs unmount {p}; zfs unload-key {p}"  # a mounted dataset's key is busy
OWN_CHILD = ROOT + (f"; echo {H2} | zfs create -o encryption=on -o keyformat=hex "
                    "-o keylocation=prompt {p}/c")


def is_key(key: str, dataset: str = "{p}") -> str:
    """An ``after`` script: is ``key`` the dataset's current key (``load-key -n``)?"""
    return f"printf %s {key} | zfs load-key -n -L prompt {dataset} 2>&1; echo rc=$?"


RECEIVE = [
    rx("r-new", "full stream, new target", "{p}"),
    rx("r-u", "-u: not mounted", "-u {p}"),
    rx("r-v", "-v prints zfs's progress lines", "-v {p}"),
    rx("r-nv", "-n -v: what would be received, nothing changed", "-nv {p}"),
    rx("r-n", "-n alone", "-n {p}"),
    rx("r-s", "-s on a complete stream", "-s {p}"),
    rx("r-permuted", "options after the target (GNU getopt)", "{p} -u -v"),
    rx("r-recv", "the recv alias", "-u {p}", command="recv"),
    rx("r-snapname", "snapshot target names the snapshot", "{p}@mine"),
    rx("r-exists", "refused: target exists without -F", "{p}", setup=FULL_T),
    rx("r-F-exists", "-F with a full stream onto its own copy", "-F {p}", setup=FULL_T),
    rx("r-incr", "incremental onto its base", "{p}", "incr", FULL_T),
    rx("r-incr-missing", "refused: incremental without target", "{p}", "incr"),
    rx("r-incr-newer", "incremental onto a target with a newer, empty snapshot", "{p}", "incr",
       FULL_T + "; zfs snapshot {p}@x"),
    rx("r-incr-F", "-F rolls back the newer snapshot", "-F {p}", "incr",
       FULL_T + "; zfs snapshot {p}@x"),
    rx("r-M", "-M -F: incremental onto a mounted target", "-M -F {p}", "incr", FULL_T),
    rx("r-d", "-d: name from the stream minus the pool", "-d {p}", "full", MADE),
    rx("r-e", "-e: last element of the stream's name", "-e {p}", "rep", MADE),
    rx("r-d-R", "-d with a replication stream", "-d -u {p}", "rep", MADE),
    rx("r-de", "refused: -d and -e together", "-d -e {p}"),
    rx("r-Fdu", "bundled -Fdu", "-Fdu {p}", "rep", MADE),
    rx("r-Feu", "bundled -Feu onto an existing copy", "-Feu {p}", "rep",
       MADE + "; zfs receive -e {p} < {s}/rep"),
    rx("r-d-missing", "-d below a target that does not exist", "-d {p}/nope", setup=MADE),
    rx("r-R", "replication stream, three datasets", "{p}", "rep"),
    rx("r-Rw", "raw replication stream of an encrypted tree", "-u {p}", "reprw"),
    rx("r-raw", "raw encrypted stream", "-u {p}", "raw"),
    rx("r-raw-incr", "raw incremental", "-u {p}", "rawincr", RAW_T),
    rx("r-raw-boundary", "refused: raw encrypted -F onto unencrypted", "-F -u {p}", "raw",
       FULL_T),
    rx("r-props", "-p stream brings properties", "{p}", "props"),
    rx("r-x", "-x compression", "-x compression {p}", "props"),
    rx("r-o", "-o compression and a user property", "-o compression=gzip -o dropin:tag=o {p}",
       "props"),
    rx("r-origin", "-o origin= receives a clone", "-o origin={p}/base@o1 {p}/cl", "clone",
       MADE + "; zfs receive {p}/base < {s}/corig"),
    rx("r-clone-no-origin", "refused: clone stream whose origin is nowhere", "{p}/cl", "clone2",
       MADE),
    rx("r-x-raw", "refused: -x encryption on a raw stream", "-x encryption -u {p}", "raw"),
    rx("r-o-keylocation-raw", "-o keylocation on a raw stream",
       "-u -o keylocation=file:///nonexistent {p}", "raw"),
    rx("r-h", "-h skips holds", "-h {p}", "repholds"),
    rx("r-holds", "holds come with a -h send stream", "{p}", "repholds"),
    rx("r-trunc", "truncated stream fails, nothing left", "{p}", "trunc"),
    rx("r-s-trunc", "-s keeps a resumable partial receive", "-s {p}", "trunc"),
    rx("r-A", "-A aborts the partial receive", "-A {p}", "",
       "zfs receive -s {p} < {s}/trunc || true"),
    rx("r-A-nothing", "refused: -A without a partial receive", "-A {p}", "", FULL_T),
    rx("r-A-n", "refused: -A with -n", "-A -n {p}", ""),
    rx("r-c", "-c heals from a full stream (2.2+; 2.1 refuses the option)", "-c {p}@s1",
       "full", FULL_T),
    rx("r-garbage", "refused: not a stream", "{p}", "garbage"),
    rx("r-empty", "refused: empty stdin", "{p}", ""),
    rx("r-no-target", "refused: no target", ""),
    rx("r-two-targets", "refused: two targets", "{p} {p}/u"),
    rx("r-bad-option", "refused: -Z", "-Z {p}"),
    rx("r-long-option", "refused: an unknown long option", "--frobnicate {p}"),
    rx("r-o-missing", "refused: -o without its argument", "{p} -o"),
    rx("r-o-noeq", "refused: -o without =", "-o novalue {p}"),
    rx("r-bad-name", "refused: two @ in the target", "{p}@a@b"),
    rx("r-bad-char", "refused: a bad character in the target", "{p}#x"),
    rx("r-no-pool", "refused: the pool does not exist", "nosuchpool/t"),
    rx("r-no-parent", "refused: the parent does not exist", "{p}/no/t", setup=MADE),
    Case("r-allow-change", "-F onto an unencrypted target across the boundary", "receive",
         ("-F", "-u", "{p}"), "stream:raw", FULL_T,
         differs="the opt-in --allow-encryption-change: zfs refuses, encroot replaces",
         encroot_args=("-F", "-u", "--allow-encryption-change", "{p}"),
         expect={"": {"encryption": "aes-256-gcm", "encryptionroot": "POOL/NAME"}}),
]

CHANGE_KEY = [
    ck("k-prompt", "new key from piped stdin (keylocation=prompt)", "{p}", H2, ROOT,
       is_key(H2)),
    ck("k-l-prompt", "-l: current then new key from piped stdin", "-l {p}", f"{H1}|{H2}",
       ROOT + UNLOAD, is_key(H2)),
    ck("k-l-loaded", "-l with the key already loaded", "-l {p}", H2, ROOT, is_key(H2)),
    ck("k-file", "new key from the keylocation file", "{p}", "",
       FILE_ROOT + f"; printf %s {H2} > {{keys}}/{{name}}", is_key(H2)),
    ck("k-l-file", "-l: current key from the keylocation file", "-l {p}", "",
       FILE_ROOT + UNLOAD, is_key(H1)),
    ck("k-o-location", "-o keylocation=file:// reads that file", "-o keylocation=file://{keys}/new"
       " {p}", "", ROOT + f"; printf %s {H2} > {{keys}}/new", is_key(H2)),
    ck("k-o-format", "-o keyformat=passphrase -o pbkdf2iters", "-o keyformat=passphrase "
       "-o pbkdf2iters=100000 {p}", P2, ROOT, is_key(f"'{P2}'")),
    ck("k-i", "-i: a separately keyed child inherits", "-i {p}/c", "", OWN_CHILD,
       is_key(H1, "{p}")),
    ck("k-li", "bundled -li", "-li {p}/c", "", OWN_CHILD),
    ck("k-child-format", "-o keyformat on an inheriting child: its own root", "-o keyformat=hex"
       " {p}/c", H2, CHILD, is_key(H2, "{p}/c")),
    ck("k-child-no-format", "refused: inheriting child without keyformat", "{p}/c", H2, CHILD),
    ck("k-i-child", "refused: -i on an inheriting child", "-i {p}/c", "", CHILD),
    ck("k-i-plain-parent", "refused: -i under an unencrypted parent", "-i {p}", "", ROOT),
    ck("k-i-format", "refused: -i with -o keyformat", "-i -o keyformat=hex {p}/c", "",
       OWN_CHILD),
    ck("k-unloaded", "refused: key not loaded, no -l", "{p}", H2,
       ROOT + UNLOAD),
    ck("k-wrong-key", "refused: -l with a wrong current key", "-l {p}", f"{H3}|{H2}",
       ROOT + UNLOAD),
    ck("k-short-key", "refused: a short hex key on stdin", "{p}", "abcd", ROOT),
    ck("k-unencrypted", "refused: not encrypted", "{p}", H2, MADE),
    ck("k-missing", "refused: no such dataset", "{p}/none", H2),
    ck("k-snapshot", "refused: a snapshot", "{p}@s", H2, ROOT + "; zfs snapshot {p}@s"),
    ck("k-atime", "refused: -o atime=on", "-o atime=on {p}", H2, ROOT),
    ck("k-iters-hex", "refused: pbkdf2iters with a hex key", "-o pbkdf2iters=200000 {p}", H2,
       ROOT),
    ck("k-bad-option", "refused: -x", "-x {p}", H2, ROOT),
    ck("k-no-dataset", "refused: no dataset", "", H2),
    Case("k-batch", "two datasets in one command", "change-key", ("{p}", "{p}/k2"),
         f"text:{H2}|{H3}", ROOT + f"; echo {H1} | zfs create -o encryption=on -o keyformat=hex"
         " -o keylocation=prompt {p}/k2", is_key(H3, "{p}/k2"),
         differs="a batch: zfs takes one dataset, encroot changes each (keys read in order)",
         encroot_args=("{p}", "{p}/k2"), expect={"/k2": {"keystatus": "available"}}),
    Case("k-user-prop-l", "-l and a user property, keys piped", "change-key",
         ("-l", "-o", "dropin:tag=2", "{p}"), f"text:{H1}|{H2}",
         ROOT + UNLOAD, is_key(H2),
         differs="user properties with the key: zfs 2.1-2.4 refuse them, encroot journals them",
         encroot_args=("-l", "-o", "dropin:tag=2", "{p}"), expect={"": {"dropin:tag": "2"}}),
    Case("k-user-prop-file", "a user property, new key from the keylocation file", "change-key",
         ("-o", "dropin:tag=3", "{p}"), "", FILE_ROOT + f"; printf %s {H2} > {{keys}}/{{name}}",
         is_key(H2), differs="user properties with the key (zfs reads the file itself)",
         encroot_args=("-o", "dropin:tag=3", "{p}"), expect={"": {"dropin:tag": "3"}}),
    Case("k-user-prop-child", "a user property and -o keyformat on an inheriting child",
         "change-key", ("-o", "keyformat=hex", "-o", "dropin:tag=4", "{p}/c"), f"text:{H2}",
         CHILD, is_key(H2, "{p}/c"), differs="user properties with the key; the child "
         "becomes its own root as in zfs",
         encroot_args=("-o", "keyformat=hex", "-o", "dropin:tag=4", "{p}/c"),
         expect={"/c": {"dropin:tag": "4", "encryptionroot": "POOL/NAME/c"}}),
]

CASES = RECEIVE + CHANGE_KEY
