"""The search parameters carevault supports, per resource type (FHIR R4 names).

Only token and date parameters are listed here: they are the ones that become
blind-index terms. ``_id``, ``_lastUpdated`` (server metadata) and the patient
scope (``patient`` / ``subject``) are handled by :mod:`.search` itself.

Each parameter lists the element paths it reads, with the FHIR datatype at the
end of the path, e.g. ``"code:CodeableConcept"`` or ``"effectivePeriod:Period"``.
Paths follow R4's SearchParameter expressions, minus what needs a terminology
server or a FHIRPath engine (``resolve()``, ``as(Timing)``): docs/fhir.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

TokenType = Literal["CodeableConcept", "Coding", "Identifier", "code", "boolean"]
DateType = Literal["date", "dateTime", "instant", "Period"]
ParamKind = Literal["token", "date"]

_TOKEN_TYPES: Final = frozenset({"CodeableConcept", "Coding", "Identifier", "code", "boolean"})
_DATE_TYPES: Final = frozenset({"date", "dateTime", "instant", "Period"})


@dataclass(frozen=True)
class ElementPath:
    """A dotted path from the resource root and the datatype found there."""

    steps: tuple[str, ...]
    datatype: str


@dataclass(frozen=True)
class SearchParam:
    name: str
    kind: ParamKind
    paths: tuple[ElementPath, ...]
    documentation: str

    @property
    def is_code_only(self) -> bool:
        """True when every path is a bare ``code`` or ``boolean`` (no system)."""
        return all(p.datatype in ("code", "boolean") for p in self.paths)


def _param(name: str, spec: str, documentation: str) -> SearchParam:
    paths = []
    for item in spec.split():
        dotted, _, datatype = item.partition(":")
        paths.append(ElementPath(tuple(dotted.split(".")), datatype))
    kinds = {"token" if p.datatype in _TOKEN_TYPES else "date" for p in paths}
    if len(kinds) != 1 or any(p.datatype not in _TOKEN_TYPES | _DATE_TYPES for p in paths):
        raise ValueError(f"bad search parameter spec {name}: {spec}")
    kind: ParamKind = "token" if kinds == {"token"} else "date"
    return SearchParam(name, kind, tuple(paths), documentation)


_IDENTIFIER = "identifier:Identifier"


def _params(*params: SearchParam) -> Mapping[str, SearchParam]:
    return {p.name: p for p in params}


P = _param
#: Token and date search parameters per supported type.
SEARCH_PARAMS: Final[Mapping[str, Mapping[str, SearchParam]]] = {
    # R4 defines no search parameter on Binary; its content is never indexed.
    "Binary": _params(),
    "Patient": _params(
        P("identifier", _IDENTIFIER, "A patient identifier"),
        P("gender", "gender:code", "Gender of the patient"),
        P("birthdate", "birthDate:date", "The patient's date of birth"),
        P("active", "active:boolean", "Whether the patient record is active"),
    ),
    "AllergyIntolerance": _params(
        P("identifier", _IDENTIFIER, "External ids for this item"),
        P("code", "code:CodeableConcept reaction.substance:CodeableConcept", "Code that identifies the allergy or intolerance"),
        P("clinical-status", "clinicalStatus:CodeableConcept", "active | inactive | resolved"),
        P("verification-status", "verificationStatus:CodeableConcept", "unconfirmed | confirmed | refuted | entered-in-error"),
        P("type", "type:code", "allergy | intolerance"),
        P("category", "category:code", "food | medication | environment | biologic"),
        P("criticality", "criticality:code", "low | high | unable-to-assess"),
        P("date", "recordedDate:dateTime", "Date first version of the resource instance was recorded"),
    ),
    "CarePlan": _params(
        P("identifier", _IDENTIFIER, "External Ids for this plan"),
        P("category", "category:CodeableConcept", "Type of plan"),
        P("status", "status:code", "draft | active | on-hold | revoked | completed | entered-in-error | unknown"),
        P("intent", "intent:code", "proposal | plan | order | option"),
        P("date", "period:Period", "Time period plan covers"),
    ),
    "CareTeam": _params(
        P("identifier", _IDENTIFIER, "External Ids for this team"),
        P("category", "category:CodeableConcept", "Type of team"),
        P("status", "status:code", "proposed | active | suspended | inactive | entered-in-error"),
        P("date", "period:Period", "Time period team covers"),
    ),
    "Claim": _params(
        P("identifier", _IDENTIFIER, "The primary identifier of the financial resource"),
        P("status", "status:code", "The status of the Claim instance"),
        P("use", "use:code", "The kind of financial resource"),
        P("created", "created:dateTime", "The creation date for the Claim"),
    ),
    "Condition": _params(
        P("identifier", _IDENTIFIER, "A unique identifier of the condition record"),
        P("code", "code:CodeableConcept", "Code for the condition"),
        P("category", "category:CodeableConcept", "The category of the condition"),
        P("clinical-status", "clinicalStatus:CodeableConcept", "The clinical status of the condition"),
        P(
            "verification-status",
            "verificationStatus:CodeableConcept",
            "unconfirmed | provisional | differential | confirmed | refuted | entered-in-error",
        ),
        P("severity", "severity:CodeableConcept", "The severity of the condition"),
        P("onset-date", "onsetDateTime:dateTime onsetPeriod:Period", "Date related onsets (dateTime and Period)"),
        P("abatement-date", "abatementDateTime:dateTime abatementPeriod:Period", "Date-related abatements (dateTime and period)"),
        P("recorded-date", "recordedDate:dateTime", "Date record was first recorded"),
    ),
    "DiagnosticReport": _params(
        P("identifier", _IDENTIFIER, "An identifier for the report"),
        P("code", "code:CodeableConcept", "The code for the report"),
        P("category", "category:CodeableConcept", "Which diagnostic discipline/department created the report"),
        P("status", "status:code", "The status of the report"),
        P("date", "effectiveDateTime:dateTime effectivePeriod:Period", "The clinically relevant time of the report"),
        P("issued", "issued:instant", "When the report was issued"),
    ),
    "DocumentReference": _params(
        P("identifier", "masterIdentifier:Identifier identifier:Identifier", "Master Version Specific Identifier"),
        P("type", "type:CodeableConcept", "Kind of document (LOINC if possible)"),
        P("category", "category:CodeableConcept", "Categorization of document"),
        P("status", "status:code", "current | superseded | entered-in-error"),
        P("contenttype", "content.attachment.contentType:code", "Mime type of the content, with charset etc."),
        P("date", "date:instant", "When this document reference was created"),
        P("period", "context.period:Period", "Time of service that is being documented"),
    ),
    "Encounter": _params(
        P("identifier", _IDENTIFIER, "Identifier(s) by which this encounter is known"),
        P("class", "class:Coding", "Classification of patient encounter"),
        P("type", "type:CodeableConcept", "Specific type of encounter"),
        P("status", "status:code", "planned | arrived | triaged | in-progress | onleave | finished | cancelled +"),
        P("reason-code", "reasonCode:CodeableConcept", "Coded reason the encounter takes place"),
        P("date", "period:Period", "A date within the period the Encounter lasted"),
    ),
    "ExplanationOfBenefit": _params(
        P("identifier", _IDENTIFIER, "The business identifier of the Explanation of Benefit"),
        P("status", "status:code", "Status of the instance"),
        P("created", "created:dateTime", "The creation date for the EOB"),
    ),
    "Goal": _params(
        P("identifier", _IDENTIFIER, "External Ids for this goal"),
        P(
            "lifecycle-status",
            "lifecycleStatus:code",
            "proposed | planned | accepted | active | on-hold | completed | cancelled | entered-in-error | rejected",
        ),
        P(
            "achievement-status",
            "achievementStatus:CodeableConcept",
            "in-progress | improving | worsening | no-change | achieved | sustaining | not-achieved | no-progress | not-attainable",
        ),
        P("category", "category:CodeableConcept", "E.g. Treatment, dietary, behavioral, etc."),
        P("start-date", "startDate:date", "When goal pursuit begins"),
        P("target-date", "target.dueDate:date", "Reach goal on or before"),
    ),
    "ImagingStudy": _params(
        P("identifier", _IDENTIFIER, "Identifiers for the Study, such as DICOM Study Instance UID and Accession number"),
        P("status", "status:code", "The status of the study"),
        P("modality", "series.modality:Coding", "The modality of the series"),
        P("bodysite", "series.bodySite:Coding", "The body site studied"),
        P("started", "started:dateTime", "When the study was started"),
    ),
    "Immunization": _params(
        P("identifier", _IDENTIFIER, "Business identifier"),
        P("vaccine-code", "vaccineCode:CodeableConcept", "Vaccine Product Administered"),
        P("status", "status:code", "Immunization event status"),
        P("date", "occurrenceDateTime:dateTime", "Vaccination (non)-Administration Date"),
    ),
    "Media": _params(
        P("identifier", _IDENTIFIER, "Identifier(s) for the image"),
        P("status", "status:code", "preparation | in-progress | not-done | suspended | aborted | completed | entered-in-error | unknown"),
        P("type", "type:CodeableConcept", "Classification of media as image, video, or audio"),
        P("modality", "modality:CodeableConcept", "The type of acquisition equipment/process"),
        P("created", "createdDateTime:dateTime createdPeriod:Period", "When Media was collected"),
    ),
    "MedicationAdministration": _params(
        P("identifier", _IDENTIFIER, "Return administrations with this external identifier"),
        P("code", "medicationCodeableConcept:CodeableConcept", "Return administrations of this medication code"),
        P("status", "status:code", "MedicationAdministration event status"),
        P("effective-time", "effectiveDateTime:dateTime effectivePeriod:Period", "Date administration happened (or did not happen)"),
    ),
    "MedicationRequest": _params(
        P("identifier", _IDENTIFIER, "Return prescriptions with this external identifier"),
        P("code", "medicationCodeableConcept:CodeableConcept", "Return prescriptions of this medication code"),
        P("status", "status:code", "Status of the prescription"),
        P("intent", "intent:code", "Returns prescriptions with different intents"),
        P("category", "category:CodeableConcept", "Returns prescriptions with different categories"),
        P("authoredon", "authoredOn:dateTime", "Return prescriptions written on this date"),
    ),
    "MedicationStatement": _params(
        P("identifier", _IDENTIFIER, "Return statements with this external identifier"),
        P("code", "medicationCodeableConcept:CodeableConcept", "Return statements of this medication code"),
        P("status", "status:code", "Return statements that match the given status"),
        P("category", "category:CodeableConcept", "Returns statements of this category of medicationstatement"),
        P("effective", "effectiveDateTime:dateTime effectivePeriod:Period", "Date when patient was taking (or not taking) the medication"),
    ),
    "Observation": _params(
        P("identifier", _IDENTIFIER, "The unique id for a particular observation"),
        P("code", "code:CodeableConcept", "The code of the observation type"),
        P("category", "category:CodeableConcept", "The classification of the type of observation"),
        P("status", "status:code", "The status of the observation"),
        P("component-code", "component.code:CodeableConcept", "The component code of the observation type"),
        P("value-concept", "valueCodeableConcept:CodeableConcept", "The value of the observation, if the value is a CodeableConcept"),
        P(
            "date",
            "effectiveDateTime:dateTime effectivePeriod:Period effectiveInstant:instant",
            "Obtained date/time (dateTime, Period and instant; not Timing)",
        ),
    ),
    "Procedure": _params(
        P("identifier", _IDENTIFIER, "A unique identifier for a procedure"),
        P("code", "code:CodeableConcept", "A code to identify a procedure"),
        P("category", "category:CodeableConcept", "Classification of the procedure"),
        P("status", "status:code", "preparation | in-progress | not-done | on-hold | stopped | completed | entered-in-error | unknown"),
        P("date", "performedDateTime:dateTime performedPeriod:Period", "When the procedure was performed"),
    ),
    "Provenance": _params(
        P("agent-type", "agent.type:CodeableConcept", "How the agent participated"),
        P("signature-type", "signature.type:Coding", "Indication of the reason the entity signed the object(s)"),
        P("recorded", "recorded:instant", "When the activity was recorded / updated"),
        P("when", "occurredDateTime:dateTime", "When the activity occurred"),
    ),
    "Location": _params(
        P("identifier", _IDENTIFIER, "An identifier for the location"),
        P("type", "type:CodeableConcept", "A code for the type of location"),
        P("status", "status:code", "Searches for locations with a specific kind of status"),
        P("operational-status", "operationalStatus:Coding", "Searches for locations (typically bed/room) that have an operational status"),
    ),
    "Medication": _params(
        P("identifier", _IDENTIFIER, "Returns medications with this external identifier"),
        P("code", "code:CodeableConcept", "Returns medications for a specific code"),
        P("status", "status:code", "Returns medications for this status"),
        P("form", "form:CodeableConcept", "Returns medications for a specific dose form"),
    ),
    "Organization": _params(
        P("identifier", _IDENTIFIER, "Any identifier for the organization (not the accreditation issuer's identifier)"),
        P("type", "type:CodeableConcept", "A code for the type of organization"),
        P("active", "active:boolean", "Is the Organization record active"),
    ),
    "Practitioner": _params(
        P("identifier", _IDENTIFIER, "A practitioner's Identifier"),
        P("gender", "gender:code", "Gender of the practitioner"),
        P("active", "active:boolean", "Whether the practitioner record is active"),
    ),
    "PractitionerRole": _params(
        P("identifier", _IDENTIFIER, "A practitioner's Identifier"),
        P("role", "code:CodeableConcept", "The practitioner can perform this role at for the organization"),
        P("specialty", "specialty:CodeableConcept", "The practitioner has this specialty at an organization"),
        P("active", "active:boolean", "Whether this practitioner role record is in active use"),
        P("date", "period:Period", "The period during which the practitioner is authorized to perform in these role(s)"),
    ),
}
del P

#: Reference parameters that scope a search to one patient, per compartment type
#: (R4 names). Patient itself is scoped by ``_id``.
PATIENT_SCOPE_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "AllergyIntolerance": frozenset({"patient"}),
    "CarePlan": frozenset({"patient", "subject"}),
    "CareTeam": frozenset({"patient", "subject"}),
    "Claim": frozenset({"patient"}),
    "Condition": frozenset({"patient", "subject"}),
    "DiagnosticReport": frozenset({"patient", "subject"}),
    "DocumentReference": frozenset({"patient", "subject"}),
    "Encounter": frozenset({"patient", "subject"}),
    "ExplanationOfBenefit": frozenset({"patient"}),
    "Goal": frozenset({"patient", "subject"}),
    "ImagingStudy": frozenset({"patient", "subject"}),
    "Immunization": frozenset({"patient"}),
    "Media": frozenset({"patient", "subject"}),
    "MedicationAdministration": frozenset({"patient", "subject"}),
    "MedicationRequest": frozenset({"patient", "subject"}),
    "MedicationStatement": frozenset({"patient", "subject"}),
    "Observation": frozenset({"patient", "subject"}),
    "Procedure": frozenset({"patient", "subject"}),
    "Provenance": frozenset({"patient"}),
    # No patient search parameter on Binary (R4 has none): _id and _lastUpdated only.
    "Binary": frozenset(),
}
