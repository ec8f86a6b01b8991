// Log Analytics tables, data collection endpoint and rule for Tapline's
// log_analytics sink (Logs Ingestion API), and the role that lets Tapline's
// identity send to the rule. The columns are those the sink writes; see
// internal/sink/loganalytics (package doc) and its TestBicepMatchesSink,
// which fails if they drift apart.
//
// az deployment group create -g RG -f deploy/loganalytics.bicep \
//   -p workspaceName=WS principalId=OBJECT_ID

@description('Name of an existing Log Analytics workspace in this resource group.')
param workspaceName string

@description('Region of the data collection endpoint and rule: the workspace region.')
param location string = resourceGroup().location

@description('Object id of the identity Tapline runs as (managed identity or service principal).')
param principalId string

@description('Type of that identity.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

@description('Prefix of the data collection endpoint and rule names.')
param namePrefix string = 'tapline'

@description('Days of interactive retention of the two tables; -1 uses the workspace default.')
param retentionInDays int = -1

// Monitoring Metrics Publisher: the role the Logs Ingestion API requires on
// the rule (azure-contracts.md §4.2).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// Columns of TaplineAIRequests_CL and of stream Custom-TaplineAIRequests
// (gateway_request records).
var aiRequestsColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'RecordTime'
    type: 'string'
  }
  {
    name: 'RecordId'
    type: 'string'
  }
  {
    name: 'Kind'
    type: 'string'
  }
  {
    name: 'Version'
    type: 'int'
  }
  {
    name: 'DataPart'
    type: 'int'
  }
  {
    name: 'DataParts'
    type: 'int'
  }
  {
    name: 'Data'
    type: 'string'
  }
  {
    name: 'Principal'
    type: 'string'
  }
  {
    name: 'PrincipalKind'
    type: 'string'
  }
  {
    name: 'ClientIp'
    type: 'string'
  }
  {
    name: 'Deployment'
    type: 'string'
  }
  {
    name: 'Operation'
    type: 'string'
  }
  {
    name: 'Status'
    type: 'int'
  }
  {
    name: 'PromptTokens'
    type: 'long'
  }
  {
    name: 'CompletionTokens'
    type: 'long'
  }
  {
    name: 'TotalTokens'
    type: 'long'
  }
  {
    name: 'State'
    type: 'string'
  }
]

// Columns of TaplineActivity_CL and of stream Custom-TaplineActivity
// (activity_log records).
var activityColumns = [
  {
    name: 'TimeGenerated'
    type: 'datetime'
  }
  {
    name: 'RecordTime'
    type: 'string'
  }
  {
    name: 'RecordId'
    type: 'string'
  }
  {
    name: 'Kind'
    type: 'string'
  }
  {
    name: 'Version'
    type: 'int'
  }
  {
    name: 'DataPart'
    type: 'int'
  }
  {
    name: 'DataParts'
    type: 'int'
  }
  {
    name: 'Data'
    type: 'string'
  }
  {
    name: 'Scope'
    type: 'string'
  }
  {
    name: 'OperationName'
    type: 'string'
  }
  {
    name: 'Caller'
    type: 'string'
  }
  {
    name: 'ActivityStatus'
    type: 'string'
  }
  {
    name: 'Category'
    type: 'string'
  }
  {
    name: 'ResourceId'
    type: 'string'
  }
  {
    name: 'CorrelationId'
    type: 'string'
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource aiRequestsTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'TaplineAIRequests_CL'
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: 'TaplineAIRequests_CL'
      columns: aiRequestsColumns
    }
  }
}

resource activityTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'TaplineActivity_CL'
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: 'TaplineActivity_CL'
      columns: activityColumns
    }
  }
}

resource dce 'Microsoft.Insights/dataCollectionEndpoints@2022-06-01' = {
  name: '${namePrefix}-dce'
  location: location
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2022-06-01' = {
  name: '${namePrefix}-dcr'
  location: location
  dependsOn: [
    aiRequestsTable
    activityTable
  ]
  properties: {
    dataCollectionEndpointId: dce.id
    streamDeclarations: {
      'Custom-TaplineAIRequests': {
        columns: aiRequestsColumns
      }
      'Custom-TaplineActivity': {
        columns: activityColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          'Custom-TaplineAIRequests'
        ]
        destinations: [
          'workspace'
        ]
        transformKql: 'source'
        outputStream: 'Custom-TaplineAIRequests_CL'
      }
      {
        streams: [
          'Custom-TaplineActivity'
        ]
        destinations: [
          'workspace'
        ]
        transformKql: 'source'
        outputStream: 'Custom-TaplineActivity_CL'
      }
    ]
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: dcr
  name: guid(dcr.id, principalId, monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: principalType
  }
}

@description('sinks[].log_analytics.endpoint')
output logsIngestionEndpoint string = dce.properties.logsIngestion.endpoint

@description('sinks[].log_analytics.dcr_immutable_id')
output dcrImmutableId string = dcr.properties.immutableId
