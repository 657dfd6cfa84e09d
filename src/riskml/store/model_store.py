"""Exported models: LightGBM text + JSON manifest, never a pickle.

A **model folder** holds one booster: ``model.txt`` (LightGBM's text format)
and ``manifest.json`` (features, factor map, directions, classes, target,
windows, metrics, ``model_sha256``, ``num_trees``).

A **system folder** is what ``python -m riskml.train`` registers and
``riskml.predict`` scores with: ``system.json`` and one model folder per role
(``adverse``: P(adverse), reasons and what-ifs; ``status``: the split into
suspended and closed; ``recovery``: P(recovery) of suspended and closed
accounts).

Every folder carries ``checksums.json``: the sha256 of each of its files.
Loading verifies them all, checks that ``model.txt`` is whole (LightGBM
crashes on a truncated model) and that each role holds the target it should,
before LightGBM reads a byte. The checksums catch corruption and accidental
edits; against a deliberate edit of a local folder nothing local helps, which
is why a model resolved from the registry is also checked against the
checksum the registry recorded at registration (``riskml.store.tracking``).

Folders are written beside their final place and swapped in whole
(:func:`swap_in`), so a kill never leaves half a model under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import lightgbm as lgb

from riskml.io.files import atomic_dir, atomic_path, read_json, sha256_file, write_json
from riskml.exceptions import ModelError
from riskml.store.model_text import check_model_text
from riskml.explain.scoring import ScoringModel, ScoringSystem

MODEL_FILE, MANIFEST_FILE, SYSTEM_FILE, CHECKSUMS_FILE = "model.txt", "manifest.json", "system.json", "checksums.json"
#: role -> the target its model must be trained for
ROLES: dict[str, str] = {"adverse": "adverse_3m", "status": "status_3m", "recovery": "recovery_6m"}
SYSTEM_KIND = "riskml_scoring_system"
VERSION_FILE = "registered.json"  # beside a downloaded or exported folder's files: the registered name and version


def _write_checksums(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE)
    write_json({str(p.relative_to(folder)): sha256_file(p) for p in files}, folder / CHECKSUMS_FILE)
    return sha256_file(folder / CHECKSUMS_FILE)


def checksums_sha256(folder: str | os.PathLike) -> str:
    """The sha256 of a folder's ``checksums.json``: one value that vouches for every file."""
    f = Path(folder) / CHECKSUMS_FILE
    if not f.is_file():
        raise ModelError(f"{folder}: no {CHECKSUMS_FILE}; expected a model exported by riskml")
    return sha256_file(f)


def verify_checksums(folder: str | os.PathLike, *, expected: str | None = None) -> None:
    """Raise :class:`ModelError` unless every file matches ``checksums.json`` (and it matches ``expected``)."""
    folder = Path(folder)
    got = checksums_sha256(folder)
    if expected is not None and got != expected:
        raise ModelError(f"{folder / CHECKSUMS_FILE}: sha256 {got} differs from the {expected} recorded at "
                         "registration; the model changed after it was registered")
    listed = read_json(folder / CHECKSUMS_FILE)
    if not isinstance(listed, dict):
        raise ModelError(f"{folder / CHECKSUMS_FILE}: expected an object of file name -> sha256")
    inside = Path(os.path.realpath(folder))
    for rel, want in listed.items():
        f = folder / rel
        # only files of this folder are read: an entry such as ../x or /etc/x, or a link that leads out,
        # would make riskml read (and vouch for) a file it was never given
        if Path(rel).is_absolute() or ".." in Path(rel).parts or inside not in Path(os.path.realpath(f)).parents:
            raise ModelError(f"{folder / CHECKSUMS_FILE}: entry {rel!r} lies outside the model folder; expected "
                             "the folder's own files")
        if not f.is_file():
            raise ModelError(f"{f}: listed in {CHECKSUMS_FILE} but missing; the model folder is incomplete")
        if sha256_file(f) != want:
            raise ModelError(f"{f}: sha256 does not match {CHECKSUMS_FILE}; the file changed after export")


def write_model_dir(model_text: str, manifest: Mapping[str, Any], path: str | os.PathLike, *,
                    extra_files: Mapping[str, str] | None = None) -> Path:
    """Write one model folder in place: ``model.txt``, any ``extra_files`` (name -> text: the model
    report, the reference profile monitoring reads), ``manifest.json`` and ``checksums.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / MODEL_FILE) as tmp:
        tmp.write_text(model_text)
    for name, text in (extra_files or {}).items():
        with atomic_path(path / name) as tmp:
            tmp.write_text(text)
    write_json({**manifest, "model_sha256": sha256_file(path / MODEL_FILE), "num_trees": _count_trees(model_text),
                "files": {"model": MODEL_FILE, "manifest": MANIFEST_FILE}}, path / MANIFEST_FILE)
    _write_checksums(path)
    return path


def export_model_dir(model_text: str, manifest: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a model folder beside ``path`` and swap it in whole; returns ``path``."""
    return swap_in(path, lambda tmp: write_model_dir(model_text, manifest, tmp))


def swap_in(path: str | os.PathLike, write) -> Path:
    """Build a folder with ``write(tmp)`` next to ``path``, then replace ``path`` with it whole
    (:func:`riskml.io.files.atomic_dir`): a kill at any point leaves either the old folder or the new
    one under ``path``, and at most a hidden temporary that the next export removes."""
    with atomic_dir(path) as tmp:
        write(tmp)
    return Path(path)


def _count_trees(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("Tree="))


def _read_booster(model_file: Path, manifest: Mapping[str, Any]) -> lgb.Booster:
    text = model_file.read_text()
    n = _count_trees(text)
    if "end of trees" not in text or (manifest.get("num_trees") is not None and n != manifest["num_trees"]):
        raise ModelError(f"{model_file}: the LightGBM model is incomplete ({n} trees, "
                         f"{manifest.get('num_trees')} expected, 'end of trees' "
                         f"{'present' if 'end of trees' in text else 'missing'}); expected a whole model text")
    check_model_text(text, model_file)  # a crafted model text crashes LightGBM's loader: checked first
    return lgb.Booster(model_str=text)


def load_model_dir(path: str | os.PathLike, *, verify: bool = True):
    """Load one model folder: ``(lightgbm.Booster, manifest dict)``.

    Verifies every file against ``checksums.json`` and ``model.txt`` against the
    manifest's sha256, checks that the model text is whole, and never unpickles.
    """
    path = Path(path)
    model_file, manifest_file = path / MODEL_FILE, path / MANIFEST_FILE
    for f in (model_file, manifest_file):
        if not f.is_file():
            raise ModelError(f"{path}: model folder lacks {f.name}; expected {MODEL_FILE} and {MANIFEST_FILE}")
    if verify:
        verify_checksums(path)
    manifest = read_json(manifest_file)
    want, got = manifest.get("model_sha256"), sha256_file(model_file)
    if want != got:
        raise ModelError(f"{model_file}: sha256 {got} does not match the manifest's model_sha256 {want!r}")
    booster = _read_booster(model_file, manifest)
    if manifest.get("features") is not None and list(booster.feature_name()) != list(manifest["features"]):
        raise ModelError(f"{model_file}: model features {booster.feature_name()[:5]}... differ from the "
                         f"manifest's features {list(manifest['features'])[:5]}...")
    return booster, manifest


def write_system_dir(models: Mapping[str, tuple], system: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a system folder in place: one model folder per role and ``system.json``.

    ``models`` maps a role of :data:`ROLES` to ``(model text, manifest)`` or
    ``(model text, manifest, extra files)``.
    """
    path = Path(path)
    for role, (text, manifest, *extra) in models.items():
        check_role(role, manifest, source=f"{path / role}")
        write_model_dir(text, manifest, path / role, extra_files=extra[0] if extra else None)
    write_json({**system, "kind": SYSTEM_KIND, "roles": {r: r for r in models}}, path / SYSTEM_FILE)
    _write_checksums(path)
    return path


def check_role(role: str, manifest: Mapping[str, Any], *, source: str) -> None:
    """A model in the wrong role (a recovery model as the adverse one, say) is refused."""
    want = ROLES.get(role)
    if want is None:
        raise ModelError(f"{source}: unknown role {role!r}; expected one of {list(ROLES)}")
    if manifest.get("target") != want:
        raise ModelError(f"{source}: the {role} model must be trained for target {want!r}; this one is for "
                         f"{manifest.get('target')!r}")


def is_system_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / SYSTEM_FILE).is_file()


def load_system_dir(path: str | os.PathLike, *, expected_checksums: str | None = None):
    """Load a system folder: ``(system dict, {role: (Booster, manifest)})``, everything verified first."""
    path = Path(path)
    if not is_system_dir(path):
        raise ModelError(f"{path}: no {SYSTEM_FILE}; expected a scoring system exported by python -m riskml.train "
                         "(a models/<name>/ folder, a models:/ or runs:/ URI)")
    verify_checksums(path, expected=expected_checksums)
    system = read_json(path / SYSTEM_FILE)
    if system.get("kind") != SYSTEM_KIND:
        raise ModelError(f"{path / SYSTEM_FILE}: kind {system.get('kind')!r}; expected {SYSTEM_KIND!r}")
    models = {}
    roles = system.get("roles", {})
    if not isinstance(roles, dict):
        raise ModelError(f"{path / SYSTEM_FILE}: roles {roles!r}; expected an object of role -> folder")
    for role in roles:
        if role not in ROLES or roles[role] != role:  # a role is a name of ROLES, never a path (../x)
            raise ModelError(f"{path / SYSTEM_FILE}: role {role!r} -> {roles[role]!r}; expected roles named "
                             f"{list(ROLES)}, each in the folder of its name")
        booster, manifest = load_model_dir(path / role, verify=False)  # covered by the folder's checksums
        check_role(role, manifest, source=str(path / role))
        models[role] = (booster, manifest)
    if "adverse" not in models:
        raise ModelError(f"{path}: the system has no adverse model; expected roles {list(ROLES)}")
    return system, models


def registered_version(folder: str | os.PathLike) -> dict:
    """``{"model_name", "model_version"}`` of a downloaded or exported folder (empty when unknown)."""
    folder = Path(folder)
    for cand in (folder, *list(folder.parents)[:3]):
        if (cand / VERSION_FILE).is_file():
            return read_json(cand / VERSION_FILE)
    return {}


def open_system(path: str | os.PathLike, *, name: str | None = None, version: str | None = None):
    """A :class:`~riskml.explain.scoring.ScoringSystem` from a verified system folder."""
    system, models = load_system_dir(path)
    parts = {role: ScoringModel(booster, manifest, folder=Path(path) / role, explain_now=role != "status")
             for role, (booster, manifest) in models.items()}
    return ScoringSystem(parts["adverse"], parts.get("status"), parts.get("recovery"),
                         name=str(name or system.get("name") or "riskml"),
                         version=str(version if version is not None else system.get("model_version") or ""),
                         checksums=checksums_sha256(path), info=system)
