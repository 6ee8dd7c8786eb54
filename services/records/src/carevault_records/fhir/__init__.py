"""FHIR R4 domain logic of the records service: pure functions, no I/O.

- :mod:`.compartment`: supported types, patient data vs directory data, owner.
- :mod:`.validation`: structural validation into an OperationOutcome.
- :mod:`.search`: index terms and validated search queries.
- :mod:`.bundles`: transaction/batch plans, resolution, response Bundles.
- :mod:`.bundle_convert`: loader conversions (collection -> transaction).
- :mod:`.capability`: the CapabilityStatement.
- :mod:`.outcome`: OperationOutcome builders and :class:`FhirError`.

docs/fhir.md describes the choices.
"""
