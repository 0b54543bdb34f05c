"""The head: sweep loading (`sweep`), the run use case (`run`: plan, execute, resume), scheduling on
Ray (`schedule`, the only Ray-speaking head code), the result store and run directory, and the
estimates a sweep is checked against before anything starts (`estimate`)."""
