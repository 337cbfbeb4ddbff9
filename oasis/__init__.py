"""OASIS-1 cross-sectional data: a loader for the real distribution and an embedded simulator.

* :mod:`oasis.loader` reads a local copy of OASIS-1 (``disc*/OAS1_XXXX_MR1`` folders
  and ``oasis_cross-sectional.csv``) or the authors' ``OASIS.npz`` into
  :class:`~oasis.loader.OasisData`.
* :mod:`oasis.simulate` writes a simulated cohort in the same on-disk layout, built
  from the MNI152 template shipped inside nilearn, so that the same loader reads it.
  It is the default when no OASIS path is given.
"""

from oasis.loader import (
    CSV_COLUMNS,
    OasisData,
    OasisDataError,
    OasisScan,
    SkippedSubject,
    axial_slices,
    extract_axial_slice,
    load_oasis,
    load_oasis_npz,
    read_clinical_table,
    scan_oasis,
    select_cohort,
    to_data_dicts,
)
from oasis.simulate import SimulationConfig, load_simulated, simulate_cohort

__all__ = [
    "CSV_COLUMNS",
    "OasisData",
    "OasisDataError",
    "OasisScan",
    "SimulationConfig",
    "SkippedSubject",
    "axial_slices",
    "extract_axial_slice",
    "load_oasis",
    "load_oasis_npz",
    "load_simulated",
    "read_clinical_table",
    "scan_oasis",
    "select_cohort",
    "simulate_cohort",
    "to_data_dicts",
]
