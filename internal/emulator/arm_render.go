package emulator

import "strconv"

// appendEvent appends e as EventData JSON, compact, in the field order of the
// recorded samples (subscription-activity-log.spec-example.json,
// activity-log-event-administrative.docs-sample.json). scratch is reused for
// the JSON that properties carry inside strings; the grown scratch buffer is
// returned with the result.
func (g *armGen) appendEvent(b, scratch []byte, e *armEvent) (out, scratchOut []byte) {
	var idBuf [36]byte
	dataID := armAppendUUID(idBuf[:0], e.dataID[0], e.dataID[1])
	op, opLocalized, method := e.operation()
	rt := e.resourceType()
	b = append(b, `{"authorization":{"action":"`...)
	switch e.kind {
	case armKindPolicyAudit, armKindPolicyDeny:
		// Policy events authorize the request the policy evaluated.
		b = append(b, rt...)
		b = append(b, "/write"...)
	default:
		b = append(b, op...)
	}
	b = append(b, `","role":`...)
	b = armAppendString(b, e.role.name)
	b = append(b, `,"scope":"`...)
	resStart := len(b) // the resource id is rendered once, then copied
	b = e.appendResourceID(b)
	resEnd := len(b)
	b = append(b, `"},"caller":`...)
	if e.caller.app {
		b = armAppendString(b, e.caller.oid)
	} else {
		b = armAppendString(b, e.caller.upn)
	}
	b = append(b, `,"channels":"Operation","claims":`...)
	b = g.appendClaims(b, e)
	b = append(b, `,"correlationId":"`...)
	b = armAppendUUID(b, e.corrID[0], e.corrID[1])
	b = append(b, `","description":`...)
	if e.odd {
		b = append(b, armOddDescription...)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"eventDataId":"`...)
	b = append(b, dataID...)
	b = append(b, `","eventName":`...)
	if e.kind == armKindPolicyDeny {
		b = append(b, `{"value":"BeginRequest","localizedValue":"Begin request"}`...)
	} else {
		b = append(b, `{"value":"EndRequest","localizedValue":"End request"}`...)
	}
	b = append(b, `,"category":`...)
	if e.kind == armKindPolicyAudit || e.kind == armKindPolicyDeny {
		b = append(b, `{"value":"Policy","localizedValue":"Policy"}`...)
	} else {
		b = append(b, `{"value":"Administrative","localizedValue":"Administrative"}`...)
	}
	b = append(b, `,"eventTimestamp":"`...)
	b = armAppendTimestamp(b, e.ticks)
	b = append(b, `","httpRequest":{"clientRequestId":"`...)
	b = armAppendUUID(b, e.reqID[0], e.reqID[1])
	b = append(b, `","clientIpAddress":`...)
	b = armAppendString(b, e.caller.ip)
	b = append(b, `,"method":"`...)
	b = append(b, method...)
	b = append(b, `"},"id":"`...)
	b = append(b, b[resStart:resEnd]...)
	b = append(b, "/events/"...)
	b = append(b, dataID...)
	b = append(b, "/ticks/"...)
	b = strconv.AppendInt(b, e.ticks+armEpochTicks, 10)
	b = append(b, `","level":`...)
	switch e.kind {
	case armKindPolicyAudit:
		b = append(b, `"Warning"`...)
	case armKindPolicyDeny:
		b = append(b, `"Error"`...)
	default:
		b = append(b, `"Informational"`...)
	}
	b = append(b, `,"operationId":"`...)
	b = armAppendUUID(b, e.opID[0], e.opID[1])
	b = append(b, `","operationName":`...)
	b = armAppendLocalizable(b, op, opLocalized)
	b = append(b, `,"properties":`...)
	b, scratch = g.appendProperties(b, scratch, e, b[resStart:resEnd])
	b = append(b, `,"resourceGroupName":`...)
	b = armAppendString(b, e.rg)
	b = append(b, `,"resourceProviderName":`...)
	b = armAppendLocalizable(b, e.provider(), e.provider())
	b = append(b, `,"resourceType":`...)
	b = armAppendLocalizable(b, rt, rt)
	b = append(b, `,"resourceId":"`...)
	b = append(b, b[resStart:resEnd]...)
	b = append(b, `","status":`...)
	switch e.kind {
	case armKindPolicyDeny:
		b = append(b, `{"value":"Failed","localizedValue":"Failed"},"subStatus":{"value":"Forbidden","localizedValue":"Forbidden (HTTP Status Code: 403)"}`...)
	case armKindPolicyAudit:
		b = append(b, `{"value":"Succeeded","localizedValue":"Succeeded"},"subStatus":{"value":"","localizedValue":""}`...)
	case armKindRoleDelete, armKindGroupWrite:
		b = append(b, `{"value":"Succeeded","localizedValue":"Succeeded"},"subStatus":{"value":"OK","localizedValue":"OK (HTTP Status Code: 200)"}`...)
	default:
		b = append(b, `{"value":"Succeeded","localizedValue":"Succeeded"},"subStatus":{"value":"Created","localizedValue":"Created (HTTP Status Code: 201)"}`...)
	}
	b = append(b, `,"submissionTimestamp":"`...)
	b = armAppendTimestamp(b, e.ticks+e.delay)
	b = append(b, `","subscriptionId":`...)
	if e.sc.kind == armScopeSubscription {
		b = armAppendString(b, e.sc.id)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"tenantId":`...)
	b = armAppendString(b, g.tenant)
	b = append(b, `,"relatedEvents":[]}`...)
	return b, scratch
}

func armAppendLocalizable(b []byte, value, localized string) []byte {
	b = append(b, `{"value":`...)
	b = armAppendString(b, value)
	b = append(b, `,"localizedValue":`...)
	b = armAppendString(b, localized)
	return append(b, '}')
}

// armClaim appends one "key":"value" claim; every claim value is a string
// (azure-contracts.md §2.5).
func armClaim(b []byte, key, value string) []byte {
	b = armAppendString(b, key)
	b = append(b, ':')
	b = armAppendString(b, value)
	return append(b, ',')
}

// armClaimInt appends a numeric claim, as a string like every claim.
func armClaimInt(b []byte, key string, n int64) []byte {
	b = armAppendString(b, key)
	b = append(b, ':', '"')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '"', ',')
}

// armProp appends one "key":"value" property.
func armProp[T string | []byte](b []byte, key string, val T) []byte {
	b = armAppendString(b, key)
	b = append(b, ':')
	return armAppendString(b, val)
}

// appendClaims appends a v1 ARM token's claims with the long URI keys the
// samples show; users and applications carry different sets (§8).
func (g *armGen) appendClaims(b []byte, e *armEvent) []byte {
	c := e.caller
	iat := armFloorDiv(e.ticks, armTicksPerSecond) - int64(e.svcReqID[0]%3000)
	b = append(b, '{')
	b = armClaim(b, "aud", "https://management.core.windows.net/")
	b = armClaim(b, "iss", g.iss)
	b = armClaimInt(b, "iat", iat)
	b = armClaimInt(b, "nbf", iat)
	b = armClaimInt(b, "exp", iat+4500)
	if c.app {
		b = armClaim(b, "aio", c.aio)
		b = armClaim(b, "appid", c.appid)
		b = armClaim(b, "appidacr", "2")
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/identityprovider", g.iss)
		b = armClaim(b, "idtyp", "app")
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/objectidentifier", c.oid)
		b = armClaim(b, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", c.oid)
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/tenantid", g.tenant)
	} else {
		b = armClaim(b, "http://schemas.microsoft.com/claims/authnclassreference", "1")
		b = armClaim(b, "aio", c.aio)
		b = armClaim(b, "http://schemas.microsoft.com/claims/authnmethodsreferences", "pwd,mfa")
		b = armClaim(b, "appid", c.appid)
		b = armClaim(b, "appidacr", "0")
		b = armClaim(b, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", c.family)
		b = armClaim(b, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", c.given)
		b = armClaim(b, "ipaddr", c.ip)
		b = armClaim(b, "name", c.name)
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/objectidentifier", c.oid)
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/scope", "user_impersonation")
		b = armClaim(b, "http://schemas.microsoft.com/identity/claims/tenantid", g.tenant)
		b = armClaim(b, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", c.upn)
		b = armClaim(b, "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", c.upn)
	}
	b = armAppendString(b, "uti")
	b = append(b, ':')
	b = append(b, '"')
	b = armAppendUTI(b, e.opID)
	b = append(b, `","ver":"1.0"}`...)
	return b
}

// appendProperties appends properties: string values only, nested JSON
// encoded inside strings (requestbody, responseBody, policies) as the
// service does (azure-contracts.md §2.5). Key sets follow the DOC samples;
// the inner documents' shapes are INFERRED.
func (g *armGen) appendProperties(b, s []byte, e *armEvent, resourceID []byte) (out, scratch []byte) {
	var idBuf [36]byte
	b = append(b, '{')
	switch e.kind {
	case armKindPolicyAudit, armKindPolicyDeny:
		effect := "Audit"
		if e.kind == armKindPolicyDeny {
			effect = "Deny"
		}
		b = append(b, `"isComplianceCheck":"False","resourceLocation":"global",`...)
		b = armProp(b, "ancestors", e.sc.ancestors)
		b = append(b, ',')
		s = append(s[:0], `[{"policyDefinitionId":"/providers/Microsoft.Authorization/policyDefinitions/`...)
		s = armAppendUUID(s, e.principal[1], e.opID[1])
		s = append(s, `","policyDefinitionName":"`...)
		s = armAppendUUID(s, e.principal[1], e.opID[1])
		s = append(s, `","policyDefinitionEffect":"`...)
		s = append(s, effect...)
		s = append(s, `","policyAssignmentId":"`...)
		s = append(s, e.sc.resource...)
		s = append(s, "/providers/Microsoft.Authorization/policyAssignments/"...)
		s = append(s, e.assign...)
		s = append(s, `","policyAssignmentName":"`...)
		s = append(s, e.assign...)
		s = append(s, `","policyAssignmentScope":"`...)
		s = append(s, e.sc.resource...)
		s = append(s, `","policyAssignmentParameters":{},"policyExemptionIds":[]}]`...)
		b = armProp(b, "policies", s)
		b = append(b, `,"hierarchy":""}`...)
		return b, s
	case armKindRoleDelete:
		b = append(b, `"statusCode":"OK",`...)
	case armKindGroupWrite:
		b = append(b, `"statusCode":"OK",`...)
	default:
		b = append(b, `"statusCode":"Created",`...)
	}
	b = armProp(b, "serviceRequestId", armAppendUUID(idBuf[:0], e.svcReqID[0], e.svcReqID[1]))
	b = append(b, `,"eventCategory":"Administrative",`...)
	b = armProp(b, "entity", resourceID)
	b = append(b, ',')
	op, _, _ := e.operation()
	b = armProp(b, "message", op)
	b = append(b, ',')
	b = armProp(b, "hierarchy", e.sc.hierarchy)
	b = append(b, ',')
	s = s[:0]
	switch e.kind {
	case armKindRoleWrite, armKindRoleDelete:
		s = append(s, `{"Id":"`...)
		s = armAppendUUID(s, e.target[0], e.target[1])
		s = append(s, `","Properties":{"PrincipalId":"`...)
		s = armAppendUUID(s, e.principal[0], e.principal[1])
		s = append(s, `","PrincipalType":"`...)
		if e.principal[0]%3 == 0 {
			s = append(s, "ServicePrincipal"...)
		} else {
			s = append(s, "User"...)
		}
		s = append(s, `","RoleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/`...)
		s = append(s, e.role.id...)
		s = append(s, `","Scope":"`...)
		s = append(s, e.sc.resource...)
		if e.rg != "" {
			s = append(s, "/resourceGroups/"...)
			s = append(s, e.rg...)
		}
		s = append(s, `","Condition":null,"ConditionVersion":null}}`...)
		if e.kind == armKindRoleDelete {
			b = armProp(b, "responseBody", s)
		} else {
			b = armProp(b, "requestbody", s)
		}
	case armKindPolicyAssignmentWrite:
		s = append(s, `{"properties":{"displayName":`...)
		s = armAppendString(s, e.assign)
		s = append(s, `,"policyDefinitionId":"/providers/Microsoft.Authorization/policyDefinitions/`...)
		s = armAppendUUID(s, e.svcReqID[1], e.target[1])
		s = append(s, `","scope":`...)
		s = armAppendString(s, e.sc.resource)
		s = append(s, `,"parameters":{},"enforcementMode":"Default"},"location":"westeurope","identity":{"type":"SystemAssigned"}}`...)
		b = armProp(b, "requestbody", s)
	case armKindGroupWrite:
		s = append(s, `{"properties":{"displayName":`...)
		s = armAppendString(s, e.group.display)
		s = append(s, `,"details":{"parent":{"id":`...)
		parent := g.h.root
		if e.group.parent != nil {
			parent = e.group.parent
		}
		s = armAppendString(s, ARMGroupScope(parent.id))
		s = append(s, `}}}}`...)
		b = armProp(b, "requestbody", s)
	}
	return append(b, '}'), s
}
