"""Maps the top-level `orchestrator/`, `agents/` and `dashboards/` folders onto the `moecluster.*` namespace.

pyproject.toml holds the metadata; this file only computes the package list, because
setuptools' declarative `packages.find` cannot re-root folders under another name.
"""
from setuptools import find_packages, setup

ROOTS = {"moecluster.orchestrator": "orchestrator", "moecluster.agents": "agents",
         "moecluster.dashboards": "dashboards"}

packages = []
package_dir = {}
for name, folder in ROOTS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"moecluster.orchestrator": ["assets/*"], "moecluster.agents": ["assets/*"]},
    include_package_data=True,
)
