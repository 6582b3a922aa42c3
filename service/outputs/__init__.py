"""Result outputs: TID 1500 SR, FHIR R4 Bundle, and their delivery."""
