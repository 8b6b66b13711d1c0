-- Argo CD health check for sluice.dev/Rollout. Install it in argocd-cm as
-- resource.customizations.health.sluice.dev_Rollout (see docs/operations.md).
--
-- Reads only what the controller writes: status.observedGeneration (an integer),
-- status.phase (Progressing | Paused | Healthy | Degraded), status.message and the
-- standard conditions (Ready, Reconciling, Stalled, Paused, Available, Progressing,
-- InvalidSpec). Argo CD runs this in gopher-lua (Lua 5.1) with only the base and table
-- libraries open, so no string.* functions are used.

local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(conditionType)
  local c = condition(conditionType)
  return c ~= nil and c.status == "True"
end

-- The first non-empty of the arguments.
local function text(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v ~= nil and v ~= "" then
      return v
    end
  end
  return ""
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the rollout"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = tonumber(obj.metadata.generation)
local observed = tonumber(obj.status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. generation
    .. " (observed " .. tostring(observed) .. ")"
  return hs
end

local phase = obj.status.phase
local message = obj.status.message

-- Degraded: an invalid spec, an abort or a missed progress deadline. Each also sets
-- Stalled=True and phase Degraded; the conditions are read first because their
-- messages say which one it is.
local invalid = condition("InvalidSpec")
if invalid ~= nil and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = text(invalid.message, message, "the rollout's spec is invalid")
  return hs
end
local progressing = condition("Progressing")
if progressing ~= nil and progressing.status == "False"
  and (progressing.reason == "RolloutAborted" or progressing.reason == "ProgressDeadlineExceeded") then
  hs.status = "Degraded"
  hs.message = text(message, progressing.message, progressing.reason)
  return hs
end
local stalled = condition("Stalled")
if (stalled ~= nil and stalled.status == "True") or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = text(message, stalled ~= nil and stalled.message or nil, "the rollout is stalled")
  return hs
end

-- Suspended: waiting at a pause step, a blue-green preview or spec.paused.
if phase == "Paused" or isTrue("Paused") then
  hs.status = "Suspended"
  hs.message = text(message, "the rollout is paused")
  return hs
end

if phase == "Healthy" and isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = text(message, "the rollout is healthy")
  return hs
end

hs.status = "Progressing"
hs.message = text(message, "the rollout is progressing")
return hs
