#!/usr/bin/env python3
"""Validate the Kubernetes manifests in deploy/: core kinds (the Job) against the Kubernetes API
schemas that kubernetes-validate ships (strict: unknown fields fail), the system-upgrade-
controller Plan against tests/schemas/suc-plan-v1.json. No cluster runs here: this is the check
below the cluster; `migrate --detach`, re-entry and `status` are tested on the real node
(tests/e2e/run.sh, scenario 13). Ends with `N passed, M failed`."""
import glob
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.environ.get("K8S_VERSION", "1.30.0")

passed = failed = 0
with open(os.path.join(REPO, "tests/schemas/suc-plan-v1.json")) as f:
    plan_schema = json.load(f)

for path in sorted(glob.glob(os.path.join(REPO, "deploy/*/*.yaml"))):
    rel = os.path.relpath(path, REPO)
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        what = f"{rel}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        try:
            if doc.get("kind") == "Plan":
                jsonschema.validate(doc, plan_schema)
            else:
                kubernetes_validate.validate(doc, K8S, strict=True)
            print(f"ok   {what}")
            passed += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            print(f"FAIL {what}: {e}")
            failed += 1

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
