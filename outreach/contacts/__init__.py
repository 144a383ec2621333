"""Contacts: validation, the service functions, CSV import and export.

What other areas call::

    add_contact(session, ContactInput(...), clinic_timezone=..., now=...) -> Contact
    update_contact(session, contact, ContactInput(...), now=...) -> Contact
    get_contact(session, 12 | "ext:MRN") -> Contact   (contact_id_of: the id alone)
    find_contacts(session, search=..., tag=..., phone=..., email=..., consent_to=..., after_id=..., limit=...)
    find_contacts_json(session, ...same filters...) -> [the JSON of each]  (lists: no mapped objects)
    documents.contact_documents(session, ...same filters...) -> [(id, JSON text)]  (built by PostgreSQL)
    delete_contact(session, contact)  (refused when the contact has history)
    contact_json(session, contact) / contacts_json(session, contacts)
    shared_phones(session, phones) -> set[str]
    change_consent(session, contact_id, channel, categories, grant=..., wording=..., recorded_by=...)
    import_contacts_csv(session, path, clinic_timezone=...) -> ImportReport
    export_contacts_csv(session, path) -> int
"""

from outreach.contacts.export import export_contacts_csv
from outreach.contacts.fields import FieldError, normalize_phone, resolve_timezone
from outreach.contacts.importer import ImportReport, import_contacts_csv
from outreach.contacts.reader import CsvUnusable
from outreach.contacts.service import (
    ContactInput,
    InvalidContact,
    add_contact,
    change_consent,
    contact_id_of,
    contact_json,
    contacts_json,
    delete_contact,
    find_contacts,
    find_contacts_json,
    get_contact,
    shared_phones,
    update_contact,
)

__all__ = [
    "ContactInput",
    "CsvUnusable",
    "FieldError",
    "ImportReport",
    "InvalidContact",
    "add_contact",
    "change_consent",
    "contact_id_of",
    "contact_json",
    "contacts_json",
    "delete_contact",
    "export_contacts_csv",
    "find_contacts",
    "find_contacts_json",
    "get_contact",
    "import_contacts_csv",
    "normalize_phone",
    "resolve_timezone",
    "shared_phones",
    "update_contact",
]
