"""CT series and lesion contours (RTSTRUCT, SEG) -> HU volume and lesion masks."""
