-- Orthanc auto-routing to radiomics-cds: the reference setup (deploy/orthanc/orthanc.json loads it
-- through "LuaScripts"; README "Reference PACS setup: Orthanc auto-routing" explains it).
--
-- When a study becomes stable (no new instance for "StableAge" seconds), send its CT images, its
-- Spatial Registration objects (which map a prior study's Frame of Reference onto this one) and
-- its contours (RTSTRUCT or SEG) to the DICOM modality "radiomics-cds", in one C-STORE
-- association, as one Orthanc job:
--
-- * Stable study, not each stored instance: radiomics-cds gets the whole study at once, never a
--   partial one, and does not sit waiting for slices the scanner is still sending.
-- * Only the SOP classes radiomics-cds accepts (CT Image, Enhanced CT Image, Spatial Registration,
--   RT Structure Set, Segmentation), chosen per instance by SOP Class UID. Everything else stays in Orthanc: SRs
--   (radiomics-cds' own returning report above all, which would otherwise be sent back to it),
--   dose reports, secondary captures, presentation states, other modalities.
-- * Only studies with contours: a CT without RTSTRUCT/SEG cannot be scored, so it is not sent
--   (when the contours arrive later, the study becomes stable again and CT + contours go).
-- * Only when something new arrived: each routed series is marked with the user metadata
--   "RadiomicsCdsRouted" (its number of routed instances). When radiomics-cds' SR comes back the
--   study becomes stable once more; nothing new is eligible, nothing is sent: no loop. A new
--   contour series (or more slices) re-sends the CT with the contours; radiomics-cds treats
--   instances it already has as the same instances (no duplicate SR).
-- * Asynchronous Orthanc job: the Lua thread is not blocked while a large CT is sent; the job is
--   listed under /jobs (Orthanc Explorer: "Jobs"), survives an Orthanc restart and, if
--   radiomics-cds was unreachable, can be resubmitted (POST /jobs/<id>/resubmit).

local TARGET = 'radiomics-cds'      -- the "DicomModalities" entry of radiomics-cds
local MARK = 'RadiomicsCdsRouted'   -- declared in "UserMetadata"

local CT_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.2'] = true,      -- CT Image Storage
  ['1.2.840.10008.5.1.4.1.1.2.1'] = true,    -- Enhanced CT Image Storage
}
local REGISTRATION_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.66.1'] = true,   -- Spatial Registration Storage
}
local CONTOUR_CLASSES = {
  ['1.2.840.10008.5.1.4.1.1.481.3'] = true,  -- RT Structure Set Storage
  ['1.2.840.10008.5.1.4.1.1.66.4'] = true,   -- Segmentation Storage
  ['1.2.840.10008.5.1.4.1.1.66.7'] = true,   -- Label Map Segmentation Storage (LABELMAP SEG)
}
-- Series-level pre-filter, so that instances of other series are never even looked at.
local MODALITIES = { CT = true, REG = true, RTSTRUCT = true, SEG = true }

local function SopClassOf(instanceId)
  local sopClass = RestApiGet('/instances/' .. instanceId .. '/metadata/SopClassUid')
  if sopClass == nil or sopClass == '' then
    -- Metadata missing (e.g. an index from an old Orthanc): read the tag itself.
    local tags = ParseJson(RestApiGet('/instances/' .. instanceId .. '/simplified-tags'))
    sopClass = tags['SOPClassUID'] or ''
  end
  return sopClass
end

function OnStableStudy(studyId, tags, metadata)
  local ctInstances, registrationInstances, contourInstances = {}, {}, {}
  local counts, fresh = {}, false

  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    if MODALITIES[series['MainDicomTags']['Modality'] or ''] then
      local eligible = 0
      for _, instanceId in ipairs(series['Instances']) do
        local sopClass = SopClassOf(instanceId)
        if CT_CLASSES[sopClass] then
          table.insert(ctInstances, instanceId)
          eligible = eligible + 1
        elseif REGISTRATION_CLASSES[sopClass] then
          table.insert(registrationInstances, instanceId)
          eligible = eligible + 1
        elseif CONTOUR_CLASSES[sopClass] then
          table.insert(contourInstances, instanceId)
          eligible = eligible + 1
        end
      end
      if eligible > 0 then
        counts[series['ID']] = eligible
        local routed = ParseJson(RestApiGet('/series/' .. series['ID'] .. '/metadata?expand'))[MARK]
        if routed ~= tostring(eligible) then
          fresh = true
        end
      end
    end
  end

  if #contourInstances == 0 then
    if #ctInstances > 0 then
      print('radiomics-cds routing: study ' .. studyId .. ' has no RTSTRUCT/SEG yet, not sent')
    end
    return
  end
  if #ctInstances == 0 then
    print('radiomics-cds routing: study ' .. studyId .. ' has contours but no CT, not sent')
    return
  end
  if not fresh then
    return  -- already routed, e.g. our SR just arrived: nothing to send
  end

  -- CT and registrations first, contours last: radiomics-cds can score as soon as the contours are in.
  local resources = {}
  for _, id in ipairs(ctInstances) do table.insert(resources, id) end
  for _, id in ipairs(registrationInstances) do table.insert(resources, id) end
  for _, id in ipairs(contourInstances) do table.insert(resources, id) end

  local answer = RestApiPost('/modalities/' .. TARGET .. '/store',
                             DumpJson({ Resources = resources, Asynchronous = true }, true))
  if answer == nil then
    print('radiomics-cds routing: could not submit study ' .. studyId .. ' to "' .. TARGET ..
          '" (see the error above); it is routed again when a new instance arrives')
    return
  end
  for seriesId, eligible in pairs(counts) do
    RestApiPut('/series/' .. seriesId .. '/metadata/' .. MARK, tostring(eligible))
  end
  print('radiomics-cds routing: study ' .. studyId .. ': ' .. #ctInstances .. ' CT + ' ..
        #registrationInstances .. ' registration + ' .. #contourInstances ..
        ' contour instance(s) sent to "' .. TARGET .. '", job ' .. ParseJson(answer)['ID'])
end

print('radiomics-cds routing: stable studies with CT + RTSTRUCT/SEG go to modality "' .. TARGET .. '"')
