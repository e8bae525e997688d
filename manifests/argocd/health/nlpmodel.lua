-- Argo CD health check of serving.nlpmodel.dev/NLPModel (resource.customizations.health).
-- Phase → health: Ready → Healthy; Pending, Progressing → Progressing (Suspended while paused);
-- RolledBack, Failed → Degraded. An invalid spec (SpecValid=False) is Degraded whatever the phase: the
-- old revision keeps serving, but what Git asks for cannot be rolled out. The message is the condition's.
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  if c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the model"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local specValid = condition(status, "SpecValid")
if specValid ~= nil and specValid.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(specValid, "The spec is invalid")
  return hs
end

local phase = status.phase
if phase == "Ready" then
  hs.status = "Healthy"
  hs.message = describe(condition(status, "Ready"), "Ready")
elseif phase == "Progressing" then
  if status.paused == true then
    hs.status = "Suspended"
    hs.message = "Rollout paused at " .. tostring(status.canaryWeight or 0) .. "% (nlpctl resume)"
  else
    hs.status = "Progressing"
    hs.message = describe(condition(status, "Progressing"), "Rollout in progress")
  end
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = describe(condition(status, "Ready"), "Waiting for the model to become ready")
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = describe(condition(status, "RolledBack"), "The canary was rolled back")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(condition(status, "Ready"), "The model failed")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
