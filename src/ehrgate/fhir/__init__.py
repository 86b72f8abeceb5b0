"""The FHIR R4 centre: resources, the store, search, bundles, validation and the REST API."""
